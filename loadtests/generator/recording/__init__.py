"""Recording a run across Locust processes: one class per role, as Locust's own runners are.

    worker.WorkerRecording ─ MSG_WINDOWS / MSG_HISTORY ─►  master.MasterRecording ─► the run folder
    local.LocalRecording (the lone process: generates and writes, no messages)
      both leaders: leader.RunLeader (writer.py, the end, early stops); every generating process: process.py

protocol.py holds what all of them agree on (messages, the time line, RunSettings); recorder.py what one
process records. The locustfile picks the role once, from Locust's runner.
"""
