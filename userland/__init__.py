"""User programs: ordinary processes of the system with user privileges (SENDREC only)."""
