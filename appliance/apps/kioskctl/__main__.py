"""`python -m appliance.apps.kioskctl`."""

import sys

from appliance.apps.kioskctl.main import main

sys.exit(main())
