"""``python -m agentcomm``: the same as the ``agentcomm`` command."""

from agentcomm.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
