"""User-facing text shared by every package — bad input told in one shape (validation), user-controlled text
made safe to print (console_text): it imports nothing of ours, so the gateway, the run-folder format, the
harness, the Locust process and the reports may all use it."""
