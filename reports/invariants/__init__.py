"""Money invariants: pure checkers over the request history and a dump of the ledger's `repayments` table.

In the spirit of Jepsen's checkers, each idempotency key gets one outcome from what the clients saw
(`evidence`), and each checker compares those outcomes with the ledger and names the evidence of every violation
it finds: `money` (lost, phantom, duplicate), `daily_caps` (over_cap, and the cap in force on a business day),
`settlement` (stuck, flipped, double_settled, callback_mismatch); `check` runs them all over one run. Each is
tested on hand-made histories holding exactly one violation of its kind; docs/report.md says what each means.
"""
