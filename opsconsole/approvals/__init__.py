"""Request → approve → execute: the one life every dangerous operation lives.

- `models.ApprovalRequest` is the frame: who asked, who decided, the two-person
  rule and the typed confirmation, then `execute()` on a worker: `claim()`,
  the subclass's `run()`, and `succeed()` or `fail(message)`. Subclasses fill
  in hooks, as a ModelAdmin does.
- `tasks` holds the one task that executes any approved request. A running
  request holds a lease (`opsconsole.leases`); when its worker dies the
  reconciler calls its `on_lease_expired()`.
- `admin.ApprovalAdminMixin` gives every kind its approve/reject pages.
"""
