"""Local servers on 127.0.0.1 that speak each outside service's real wire protocol."""
