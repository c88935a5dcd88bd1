"""``python -m mep_kubeedge_adapter`` is the same as the ``mep-kubeedge-adapter`` command."""

from mep_kubeedge_adapter.cli import main

raise SystemExit(main())
