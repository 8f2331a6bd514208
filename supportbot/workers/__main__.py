"""``python -m supportbot.workers FD``: a turn worker, started by ``TurnPool``."""

import sys

from supportbot.workers.process import worker_main

worker_main(int(sys.argv[1]))
