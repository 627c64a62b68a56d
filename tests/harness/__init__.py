"""Real-server test harness: Synapse and slapd as child processes on loopback."""
