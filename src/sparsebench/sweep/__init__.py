"""Many runs: grid expansion, the driver, and executors (local processes, Ray)."""
