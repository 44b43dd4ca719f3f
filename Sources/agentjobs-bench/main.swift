print("agentjobs-bench: not written yet")
