"""Checks over the three stores: the invariants I1-I5 and `mediacanon verify`."""
