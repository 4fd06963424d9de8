import sys

from rwkv_ts.cli import main

sys.exit(main())
