pytest_plugins = ["agentcomm.testing.fixtures"]
