"""Policy evaluation: in the simulator (simulator.py) and the files it leaves (outputs.py)."""
