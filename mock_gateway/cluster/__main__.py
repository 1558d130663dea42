"""`python -m mock_gateway.cluster`: the router and supervisor process (see `mock_gateway.cluster.serve`)."""

import sys

from mock_gateway.cluster.serve import main

sys.exit(main())
