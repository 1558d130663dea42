"""What a run is asked to do: scenario models and files, the built-in scenarios, the target URL guard.

Pure data and validation; imported by the Locust process and by surge's own process alike.
"""
