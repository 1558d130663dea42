"""Where users, `surge run`, the Dockerfile and the Locust operator point Locust: `locust -f loadtests/locustfile.py`.

The generator's entry point lives in loadtests/generator/locustfile.py; Locust runs the user class and the
shape it finds in the namespace of the file it was given, so this one names them, and importing that module
registers surge's options and event hooks. pyproject's [tool.locust] names this file for a bare `locust`.
"""

from loadtests.generator.locustfile import FestivalShape, RepayingUser

__all__ = ["FestivalShape", "RepayingUser"]
