"""Every Python the tests start guards its own network use (see netguard.py)."""

import netguard

netguard.install()
