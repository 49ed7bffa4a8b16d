"""`python -m exporter`: the same CLI as `aep-flow-exporter`."""

from exporter.cli import main

raise SystemExit(main())
