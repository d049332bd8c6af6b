import sys

from openpanel_ws.cli import main

sys.exit(main())
