"""Tests mirror the packages; fakes/ holds servers that speak the real protocols.

Bytecode is cached while the suite runs, whatever the machine says: the suite starts some
three hundred Python processes (its workers, the command line, the bot), and where
PYTHONDONTWRITEBYTECODE is set (container images often set it) each of them would compile
every module it imports, and every worker rewrite every test module's asserts, again: a tenth
of the suite's CPU time. The children inherit this environment.
"""

import os
import sys

sys.dont_write_bytecode = False
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
