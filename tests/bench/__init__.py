"""`make bench` (`python -m tests.bench`, the runner in __main__.py), the floor it compares
against (floor.py) and the wrk script (wrk.lua)."""
