"""The fault suite: faults injected into real runs, each ending in a defined state with nothing
lost, and a resume that finishes the run without making finished media again.

- test_comfyui.py: ComfyUI down at submit and mid-job, WebSocket dropped, a stall, a node error
- test_models.py: language-model providers down, rate-limited, answering garbage
- test_database.py: a private MariaDB killed and restarted mid-run (slow)
- test_media_folder.py: the media folder cannot be written

The Discord gateway dropped and resumed is covered where the bot is, in
tests/bot/test_review.py::test_a_dropped_gateway_resumes_and_reactions_still_arrive (the fake
gateway drops the socket, the bot RESUMEs its session and a reaction made meanwhile counts).
Killing the bot or the command line (SIGKILL at each step) is tested with those processes.
"""
