"""`python -m appliance.apps.kioskd`."""

import sys

from appliance.apps.kioskd.main import main

sys.exit(main())
