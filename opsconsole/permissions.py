"""The console-wide permissions by name, as `user.has_perm()` takes them.

They are defined on `ConsolePermission` (no table) and handed out by the
roles in `opsconsole.roles`; code names them only through these constants.
"""

RUN_JOBS = "opsconsole.run_jobs"
ACKNOWLEDGE_INCIDENT = "opsconsole.acknowledge_incident"
WORK_RUNBOOKS = "opsconsole.work_runbooks"
REQUEST_ROLLBACK = "opsconsole.request_rollback"
APPROVE_ROLLBACK = "opsconsole.approve_rollback"
REQUEST_RESTORE = "opsconsole.request_restore"
APPROVE_RESTORE = "opsconsole.approve_restore"
REQUEST_FAILOVER = "opsconsole.request_failover"
APPROVE_FAILOVER = "opsconsole.approve_failover"
APPROVE_SETTING_CHANGE = "opsconsole.approve_setting_change"
REQUEST_DEPLOY = "opsconsole.request_deploy"
APPROVE_DEPLOY = "opsconsole.approve_deploy"
