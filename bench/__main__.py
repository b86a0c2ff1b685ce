"""Command line: ``python -m bench {list,train,zoo,...}``."""
from .cli import main

raise SystemExit(main())
