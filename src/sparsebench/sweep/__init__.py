"""Many runs: the demo today; grid expansion and executors with the sweep issue."""
