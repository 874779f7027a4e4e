"""Paper-scale results from short GPU windows (``python -m repsim.harvest``).

``plan`` turns a profile's chapters into jobs in priority order, ``costs`` estimates
their device-seconds, ``selfcheck`` tests the device in seconds, ``execute`` spends a
budget on the next jobs and ``bundle`` writes, verifies and imports what comes back.
"""
