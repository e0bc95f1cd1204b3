"""Service levels (issue 13).

The pure core, free of the database: `calendar` (business time), `policy` (the `[sla]`
configuration and which policy a ticket gets), `clocks` (the clock state machine, the
sweep's decisions and replay). The sweep, the scheduler and the storage of clocks build on
these and live beside them.
"""
