"""bin/experiment: a seeded fault-injection campaign (MINIX's SWIFI, for minikern's drivers).

    plan.py       the injections, derived from the seed alone (pure)
    targets.py    the driver table: per driver, its workload and where faults go
    workload.py   the application threads that use each driver and check every byte
    rig.py        the systems a trial boots (and checks with fsck.minix -f at the end)
    trial.py      one trial: inject a slice of the plan, one fault at a time, and classify
    report.py     report.json, report.md and the PNG figures
    main.py       the command: arguments, local workers or Dask, the merge
"""
