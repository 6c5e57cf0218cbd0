"""Backup targets, storage locations, keys, policies, backup records, and restore requests
(an approval kind: a safety backup first, the old database kept after a replace)."""

from __future__ import annotations

import re
import secrets
import subprocess
import time
from datetime import datetime, timedelta

import pyrage
from croniter import croniter
from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, models, transaction
from django.db.models import Q
from django.template.defaultfilters import filesizeformat
from django.utils import timezone
from django.utils.timesince import timesince
from django_q.models import Schedule

from alerts.incidents import raise_incident
from backups.engines import ENGINES, EngineError
from backups.errors import BackupError, RestoreRefused
from backups.storages import STORAGE_KINDS, StorageError
from opsconsole import leases, permissions
from opsconsole.approvals.models import ApprovalRequest, RunStatus
from opsconsole.fields import EncryptedTextField, reveal
from opsconsole.tasks import enqueue
from opsconsole.timeline import TimelineEntry


def default_exclusions() -> list[str]:
    # Tables named logs and sessions in any schema: big, and not worth restoring.
    return ["*.logs", "*.sessions"]


class DatabaseTarget(models.Model):
    name = models.CharField(max_length=100, unique=True)
    engine = models.CharField(max_length=20, choices=[(k, c.label) for k, c in ENGINES.items()])
    dsn = EncryptedTextField(
        help_text="postgresql://user:password@host:5432/db or sqlite:////path/db.sqlite3"
    )
    exclude_table_data = models.JSONField(
        default=default_exclusions, blank=True, help_text="pg_dump --exclude-table-data patterns."
    )
    required_tables = models.JSONField(
        default=list, blank=True, help_text='Tables a restored copy must have, e.g. ["users"].'
    )
    check_queries = models.JSONField(
        default=list,
        blank=True,
        help_text="SQL that must return a true first column on a restored copy.",
    )
    production = models.BooleanField(
        default=True,
        help_text="Replacing a production database, or keeping a recovered copy of it running, "
        "needs a second person to approve.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs):
        created = self._state.adding
        super().save(*args, **kwargs)
        if created:
            BackupPolicy.create_defaults(self)

    # What a target raises incidents about: failing backups, and failing drills.
    INCIDENTS = ("backup", "drill")

    def fingerprint(self, about: str = "backup") -> str:
        """The key of this target's incident `about` one of INCIDENTS."""
        if about not in self.INCIDENTS:
            raise ValueError(f"a database target raises no {about!r} incident")
        return f"{about}:{self.pk}"

    def newest_good_backup(self) -> Backup | None:
        return self.backups.filter(status__in=Backup.GOOD).order_by("-created_at").first()

    def base_backup_before(self, moment: datetime) -> Backup | None:
        """The newest good base backup a recovery to `moment` can start from."""
        return (
            self.backups.filter(kind=Backup.Kind.BASE, status__in=Backup.GOOD,
                                finished_at__lt=moment)
            .order_by("-finished_at")
            .first()
        )  # fmt: skip

    def clean(self) -> None:
        if self.engine and self.dsn:
            try:
                ENGINES[self.engine].validate_dsn(reveal(self.dsn))
            except ValueError as exc:
                raise ValidationError({"dsn": str(exc)}) from None
        for field in ("exclude_table_data", "required_tables", "check_queries"):
            value = getattr(self, field)
            if not isinstance(value, list) or not all(
                isinstance(v, str) and v.strip() for v in value
            ):
                raise ValidationError({field: "A JSON list of non-empty strings."})

    @property
    def db(self):
        return ENGINES[self.engine](self)


class StorageLocation(models.Model):
    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=10, choices=[(k, c.label) for k, c in STORAGE_KINDS.items()])
    config = models.JSONField(
        default=dict,
        blank=True,
        help_text='local: {"path": "/var/backups"} · '
        's3: {"bucket", "prefix", "region", "endpoint_url", '
        '"access_key_id", "storage_class", "server_side_encryption", "kms_key_id"}',
    )
    secret = EncryptedTextField(blank=True, default="", help_text="S3 secret access key.")

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if not self.kind:
            return
        try:
            self.config = STORAGE_KINDS[self.kind].validate(self.config or {}, reveal(self.secret))
        except ValueError as exc:
            raise ValidationError({"config": str(exc)}) from None

    @property
    def backend(self):
        return STORAGE_KINDS[self.kind](self)

    @classmethod
    def default(cls) -> StorageLocation:
        location, _ = cls.objects.get_or_create(
            name="Local folder", defaults={"kind": "local", "config": {}}
        )
        return location


class BackupKey(models.Model):
    """An age identity. The console keeps it (encrypted) to verify, restore and drill;
    old ones stay so old backups remain readable after a key change."""

    recipient = models.CharField(
        max_length=100, unique=True, help_text="The age public key (age1…)."
    )
    identity = EncryptedTextField(help_text="The age secret key (AGE-SECRET-KEY-1…).")
    active = models.BooleanField(
        default=True, help_text="New backups are encrypted to the active key."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    exported_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["active"], condition=Q(active=True), name="one_active_key"
            )
        ]

    def __str__(self) -> str:
        return self.recipient

    @classmethod
    def current(cls) -> BackupKey:
        """The active key, made on first use. Two first uses at once agree on one key: the
        loser of the insert (one active key, a database constraint) takes the winner's."""
        key = cls.objects.filter(active=True).first()
        if key is not None:
            return key
        identity = pyrage.x25519.Identity.generate()
        try:
            with transaction.atomic():
                return cls.objects.create(
                    recipient=str(identity.to_public()), identity=str(identity), active=True
                )
        except IntegrityError:
            return cls.objects.get(active=True)

    @classmethod
    def identities(cls) -> list:
        """Every identity that may open a backup: the console's, then any from the environment."""
        kept = [reveal(k.identity) for k in cls.objects.all()]
        return [
            pyrage.x25519.Identity.from_str(i) for i in [*kept, *settings.BACKUPS_AGE_IDENTITIES]
        ]

    @classmethod
    def rotate(cls) -> BackupKey:
        """Make a new active key; the old ones stay, so older backups remain readable."""
        with transaction.atomic():
            cls.objects.filter(active=True).update(active=False)
            return cls.current()


class BackupPolicy(models.Model):
    class Kind(models.TextChoices):
        HOURLY = "hourly", "Hourly"
        DAILY = "daily", "Daily"
        WEEKLY = "weekly", "Weekly"
        MONTHLY = "monthly", "Monthly"
        MANUAL = "manual", "Manual"
        # A physical copy of the whole cluster (pg_basebackup): with the target's WAL
        # archive, the start of a point-in-time recovery.
        BASE = "base", "Base backup (point-in-time recovery)"

    name = models.CharField(max_length=100, unique=True)
    target = models.ForeignKey(DatabaseTarget, on_delete=models.CASCADE, related_name="policies")
    storage = models.ForeignKey(StorageLocation, on_delete=models.PROTECT, related_name="policies")
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.DAILY)
    schedule = models.CharField(max_length=100, blank=True, help_text="Cron, e.g. 0 2 * * * (UTC).")
    retention_days = models.PositiveIntegerField(default=7)
    recipient = models.CharField(
        max_length=100,
        blank=True,
        help_text="An age public key (age1…) to encrypt to instead of the console's own key. "
        "Its identity must then be in BACKUPS_AGE_IDENTITIES for verification and restores.",
    )
    verify_after = models.BooleanField(default=True)
    enabled = models.BooleanField(default=True)

    class Meta:
        verbose_name_plural = "backup policies"

    # Daily, weekly and monthly dumps, each kept for its own window (7, 30, 365 days).
    # Hourly: the shipped recovery objective allows losing an hour of writes, and a
    # target without continuous WAL can only meet that with a dump every hour (its
    # cost is in the README). Continuous WAL switches it off and adds a weekly base.
    DEFAULTS = (
        ("hourly", "0 * * * *", 2),
        ("daily", "0 2 * * *", 7),
        ("weekly", "0 3 * * 0", 30),
        ("monthly", "0 4 1 * *", 365),
    )

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs):
        super().save(*args, **kwargs)
        self.sync_schedule()

    def delete(self, *args, **kwargs):
        Schedule.objects.filter(name=self.schedule_name).delete()
        return super().delete(*args, **kwargs)

    def clean(self) -> None:
        if self.recipient:
            try:
                pyrage.x25519.Recipient.from_str(self.recipient.strip())
            except Exception:
                raise ValidationError({"recipient": "Not an age public key (age1…)."}) from None
        if self.kind != self.Kind.MANUAL and (
            not self.schedule or not croniter.is_valid(self.schedule)
        ):
            raise ValidationError(
                {"schedule": "A cron expression such as '0 2 * * *' (daily at 02:00)."}
            )

    @classmethod
    def create_defaults(cls, target: DatabaseTarget) -> None:
        storage = StorageLocation.default()
        for kind, cron, days in cls.DEFAULTS:
            cls.objects.get_or_create(
                name=f"{target.name} {kind}",
                defaults={
                    "target": target,
                    "storage": storage,
                    "kind": kind,
                    "schedule": cron,
                    "retention_days": days,
                },
            )

    @property
    def schedule_name(self) -> str:
        return f"backup policy {self.pk}"

    def sync_schedule(self) -> None:
        """The django-q2 schedule follows the policy: created, updated, removed with it."""
        if not self.enabled or self.kind == self.Kind.MANUAL or not self.schedule:
            Schedule.objects.filter(name=self.schedule_name).delete()
            return
        Schedule.objects.update_or_create(
            name=self.schedule_name,
            defaults={
                "func": "backups.tasks.run_policy",
                "args": repr((self.pk,)),
                "schedule_type": Schedule.CRON,
                "cron": self.schedule,
                "repeats": -1,
                # At the cron's next time: a new policy does not run at once (a new target
                # would otherwise get every kind of backup in its first minute).
                "next_run": croniter(self.schedule, timezone.now()).get_next(datetime),
            },
        )

    def start(self, trigger: str = "schedule", user=None) -> Backup:
        return Backup.objects.create(
            policy=self,
            target=self.target,
            storage=self.storage,
            kind=self.kind,
            trigger=trigger,
            requested_by=user,
        )


def new_backup_id(now: datetime | None = None) -> str:
    return f"backup-{(now or timezone.now()):%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"


class Backup(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        VERIFIED = "verified", "Verified"
        FAILED = "failed", "Failed"
        EXPIRED = "expired", "Expired"
        DELETED = "deleted", "Deleted"

    class Trigger(models.TextChoices):
        SCHEDULE = "schedule", "Schedule"
        MANUAL = "manual", "Manual"
        PRE_RESTORE = "pre-restore", "Before a restore"
        PRE_DEPLOY = "pre-deploy", "Before a deploy"

    Kind = BackupPolicy.Kind

    # How a status is coloured wherever it is shown (admin list, dashboard); others are ok.
    STATUS_CSS = {"failed": "state-bad", "running": "state-warn", "queued": "state-warn"}

    id = models.CharField(primary_key=True, max_length=40, default=new_backup_id, editable=False)
    policy = models.ForeignKey(BackupPolicy, null=True, blank=True, on_delete=models.SET_NULL)
    target = models.ForeignKey(DatabaseTarget, on_delete=models.PROTECT, related_name="backups")
    storage = models.ForeignKey(StorageLocation, on_delete=models.PROTECT, related_name="backups")
    kind = models.CharField(
        max_length=10, choices=BackupPolicy.Kind.choices, default=BackupPolicy.Kind.MANUAL
    )
    trigger = models.CharField(max_length=15, choices=Trigger.choices, default=Trigger.MANUAL)
    status = models.CharField(
        max_length=10, choices=Status.choices, default=Status.QUEUED, db_index=True
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_seconds = models.FloatField(null=True, blank=True)
    bytes_read = models.BigIntegerField(
        default=0, help_text="Bytes of the dump as the tool wrote them."
    )
    bytes_stored = models.BigIntegerField(
        default=0, help_text="Bytes of the compressed, encrypted object."
    )
    sha256 = models.CharField(max_length=64, blank=True)
    storage_key = models.CharField(max_length=500, blank=True)
    recipient = models.CharField(
        max_length=100, blank=True, help_text="The age key it is encrypted to."
    )
    client_version = models.CharField(max_length=100, blank=True)
    server_version = models.CharField(max_length=100, blank=True)
    toc_summary = models.JSONField(default=dict, blank=True)
    progress_at = models.DateTimeField(
        null=True, blank=True, help_text="When the dump last delivered bytes."
    )
    lease_expires_at = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="Renewed by the worker running it."
    )
    verified_at = models.DateTimeField(null=True, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    stderr_tail = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # Only one backup per target runs at a time.
            models.UniqueConstraint(
                fields=["target"],
                condition=Q(status="running"),
                name="one_running_backup_per_target",
            )
        ]

    def __str__(self) -> str:
        return self.id

    GOOD = ("succeeded", "verified")

    @property
    def in_progress(self) -> bool:
        """Queued, running, or just finished and being read back (verification follows in
        the same job): its pages follow it."""
        if self.status in (self.Status.QUEUED, self.Status.RUNNING):
            return True
        recent = timezone.now() - timedelta(minutes=2)
        return (
            self.status == self.Status.SUCCEEDED
            and self.verified_at is None
            and self.finished_at is not None
            and self.finished_at >= recent
        )

    @property
    def is_good(self) -> bool:
        return self.status in self.GOOD

    def contents(self) -> str:
        """What verification found inside, e.g. `12 index, 9 table, 9 table data`."""
        summary = self.toc_summary or {}
        return ", ".join(
            f"{v} {k.lower()}" for k, v in sorted(summary.items()) if isinstance(v, int)
        )

    def facts(self) -> list[tuple[str, str]]:
        """Where it stands and what it holds, in words, for its page."""
        status = self.get_status_display()
        if self.status == self.Status.RUNNING:
            status += f", {filesizeformat(self.bytes_read)} read so far"
        facts = [("Status", f"{status}{f': {self.error}' if self.error else ''}")]
        facts.append(("Target", str(self.target)))
        by = f" by {self.requested_by}" if self.requested_by_id else ""
        how = {"schedule": "on its schedule", "manual": "by hand"}.get(
            self.trigger, "before a deploy"
        )
        facts.append(("Kind", f"{self.get_kind_display()}, {how}{by}"))
        if self.finished_at:
            facts.append(("Taken", f"{timesince(self.finished_at)} ago"))
        if self.duration_seconds is not None:
            facts.append(("Took", f"{self.duration_seconds:.1f} s"))
        if self.bytes_stored:
            ratio = (
                f", {self.bytes_read / self.bytes_stored:.1f} times smaller"
                if self.bytes_read
                else ""
            )
            facts.append(
                ("Size", f"{filesizeformat(self.bytes_read)} dumped, "
                         f"{filesizeformat(self.bytes_stored)} stored{ratio}")
            )  # fmt: skip
        facts.append((
            "Verification",
            f"read back and checked {timesince(self.verified_at)} ago" if self.verified_at
            else "not verified yet",
        ))  # fmt: skip
        if contents := self.contents():
            facts.append(("Contents", contents))
        if self.sha256:
            facts.append(("SHA-256", self.sha256))
        if self.recipient:
            facts.append(("Encrypted to", f"{self.recipient[:16]}…"))
        facts.append(("Stored in", str(self.storage)))
        if self.client_version or self.server_version:
            tools = [v for v in (self.client_version, self.server_version) if v]
            facts.append(("Tools", " · ".join(tools)))
        return facts

    def timeline(self) -> list[TimelineEntry]:
        entries = [TimelineEntry(self.created_at, "Queued", str(self.requested_by or ""), "")]
        if self.started_at:
            entries.append(TimelineEntry(self.started_at, "Started", "", ""))
        if self.finished_at:
            failed = self.status == self.Status.FAILED
            entries.append(TimelineEntry(self.finished_at, "Failed" if failed else "Finished",
                                         "", self.error, ok=not failed))  # fmt: skip
        if self.verified_at:
            entries.append(TimelineEntry(self.verified_at, "Verified", "", self.contents(), True))
        for restore in self.restores.select_related("requested_by"):
            who = str(restore.requested_by or "")
            entries.append(
                TimelineEntry(restore.requested_at, "Restore requested", who, str(restore))
            )
        if self.deleted_at:
            entries.append(TimelineEntry(self.deleted_at, "Deleted", "", ""))
        return sorted(entries, key=lambda e: e.at)

    def related(self) -> list[tuple[str, models.Model]]:
        found: list[tuple[str, models.Model]] = [("Target", self.target)]
        if self.policy_id:
            found.append(("Policy", self.policy))
        found.append(("Storage", self.storage))
        found += [("Restore", r) for r in self.restores.all()[:10]]
        return found

    def verification_fingerprint(self) -> str:
        """The incident that says this backup failed to read back."""
        return f"verify:{self.pk}"

    def claim(self, now: datetime | None = None) -> bool:
        """queued → running, once: a re-delivered task or a second worker gets False."""
        now = now or timezone.now()
        try:
            with transaction.atomic():
                claimed = Backup.objects.filter(pk=self.pk, status=self.Status.QUEUED).update(
                    status=self.Status.RUNNING,
                    started_at=now,
                    progress_at=now,
                    lease_expires_at=leases.expiry(now),
                )
        except IntegrityError:
            # Another backup of this target is running: this one fails, clearly.
            Backup.objects.filter(pk=self.pk, status=self.Status.QUEUED).update(
                status=self.Status.FAILED,
                finished_at=now,
                error="another backup of this target was running; try again when it has finished",
            )
            return False
        if claimed:
            self.refresh_from_db()
        return bool(claimed)


# A restore's (and a drill's) phases, in the order they happen, and what each is called.
PHASES = {"download": "download", "decrypt_decompress": "decrypt", "fetch": "fetch",
          "replay": "replay", "copy": "copy", "restore": "restore", "verify": "checks"}  # fmt: skip


def timings_in_words(timings: dict) -> str:
    """`fetch 3.1 s · replay 12.0 s · copy 4.2 s · checks 0.1 s` (jsonb on PostgreSQL keeps
    no key order, so the order comes from PHASES)."""
    return " · ".join(
        f"{word} {timings[name]:.1f} s"
        for name, word in PHASES.items()
        if isinstance((timings or {}).get(name), int | float)
    )


class RestoreRequest(ApprovalRequest):
    """Request → approve → execute. Restores always go into a fresh database first."""

    REQUEST_PERMISSION = permissions.REQUEST_RESTORE
    APPROVE_PERMISSION = permissions.APPROVE_RESTORE
    SHOWN_WITH = ("backup__target",)

    class Mode(models.TextChoices):
        NEW = "new", "Into a new database"
        REPLACE = "replace", "Replace the target database"
        KEEP = "keep", "Keep the recovered server to look into (point in time)"

    Status = RunStatus
    OPEN = ("requested", "approved", "running")
    FAILURES = (RestoreRefused, BackupError, EngineError, StorageError, subprocess.SubprocessError)

    status = models.CharField(
        max_length=20, choices=Status.choices, default=Status.REQUESTED, db_index=True
    )
    backup = models.ForeignKey(Backup, on_delete=models.PROTECT, related_name="restores")
    mode = models.CharField(max_length=10, choices=Mode.choices, default=Mode.NEW)
    new_database = models.CharField(
        max_length=63,
        blank=True,
        help_text="For a new database; by default the target's database name followed by "
        "_restore_ and the end of the backup's id.",
    )
    recover_to_point = models.ForeignKey(
        "RestorePoint",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Or recover exactly to a named restore point (instead of a moment).",
    )
    recover_to = models.DateTimeField(
        null=True,
        blank=True,
        help_text="For a base backup (continuous WAL): the moment to recover to; empty: as "
        "late as the WAL that was shipped.",
    )
    safety_backup = models.ForeignKey(
        Backup, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    old_database = models.CharField(max_length=63, blank=True, help_text="Kept after a replace.")
    old_database_dropped_at = models.DateTimeField(null=True, blank=True)
    timings = models.JSONField(default=dict, blank=True)
    # A recovered server kept running (mode "keep"): where, until when, how to reach it.
    scratch_dsn = EncryptedTextField(blank=True, editable=False)
    scratch_host = models.CharField(max_length=255, blank=True, editable=False)
    scratch_folder = models.CharField(max_length=1000, blank=True, editable=False)
    scratch_until = models.DateTimeField(null=True, blank=True, editable=False)
    scratch_stopped_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-requested_at"]

    def __str__(self) -> str:
        return f"restore {self.backup_id} {self.get_mode_display().lower()}"

    def clean(self) -> None:
        if self.backup_id and not self.backup.target.db.restores_into_databases:
            raise ValidationError(
                f"The console cannot restore {self.backup.target.db.label} targets; "
                "restore by hand (see the README)."
            )
        if self.backup_id and not self.backup.is_good:
            raise ValidationError(
                {"backup": "Only a succeeded or verified backup can be restored."}
            )
        if self.recover_to and self.recover_to_point_id:
            raise ValidationError("Choose a moment or a restore point, not both.")
        if (
            self.recover_to_point_id
            and self.backup_id
            and self.recover_to_point.archive.target_id != self.backup.target_id
        ):
            raise ValidationError({"recover_to_point": "A restore point of the same target."})
        if (
            (self.recover_to or self.recover_to_point_id)
            and self.backup_id
            and self.backup.kind != Backup.Kind.BASE
        ):
            raise ValidationError(
                {"recover_to": "A moment can be chosen for a base backup (continuous WAL) only."}
            )
        if self.mode == self.Mode.KEEP and self.backup_id and self.backup.kind != Backup.Kind.BASE:
            raise ValidationError(
                {"mode": "A recovered server can be kept for a base backup (continuous WAL) "
                 "only; restore this backup into a new database instead."}
            )  # fmt: skip
        if self.mode == self.Mode.NEW:
            if not self.new_database and self.backup_id:
                self.new_database = f"{self.backup.target.db.dbname}_restore_{self.backup_id[-6:]}"
            if not re.match(r"^[a-z_][a-z0-9_]{0,62}$", self.new_database or ""):
                raise ValidationError(
                    {"new_database": "Lower-case letters, digits and _ only (at most 63)."}
                )

    def recovery_target(self):
        """For a base backup: the restore point, the moment, or None (as late as shipped)."""
        return self.recover_to_point or self.recover_to

    def requires_two_people(self) -> bool:
        # Keeping a recovered server hands out a read-only login to a copy of production.
        return self.mode != self.Mode.NEW and self.backup.target.production

    def confirmation_phrase(self) -> str:
        # The target's name: short, and what is at stake. The page spells out the rest.
        return self.backup.target.name

    def facts(self) -> list[tuple[str, str]]:
        backup, target = self.backup, self.backup.target
        taken = backup.finished_at or backup.created_at
        verified = (
            f"read back and checked {timesince(backup.verified_at)} ago"
            if backup.verified_at
            else "not verified yet"
        )
        checks = [f"SHA-256 {backup.sha256[:12]}…" if backup.sha256 else "no checksum"]
        if contents := backup.contents():
            checks.append(contents)
        if backup.server_version:
            checks.append(f"server {backup.server_version}")
        # In words only: nothing here parses the target's connection string (a page must
        # never fail, or log, on a DSN it cannot read).
        if self.mode == self.Mode.NEW:
            into = f"a new database, {self.new_database}, beside the live one"
        elif self.mode == self.Mode.REPLACE:
            into = (
                f"the live database of {target} (a safety backup first; the old one is kept "
                "under another name)"
            )
        else:
            into = "a separate recovered server, kept read-only to look into"
        moment = self.recovery_target()
        facts = [
            ("Target", f"{target}{' (production)' if target.production else ''}"),
            ("Backup", f"{backup.id} ({backup.get_kind_display().lower()})"),
            ("Taken", f"{timesince(taken)} ago ({taken:%Y-%m-%d %H:%M:%S %Z})"),
            ("Size", f"{filesizeformat(backup.bytes_stored)} stored"),
            ("Verification", verified),
            ("Checks", ", ".join(checks)),
            ("Into", into),
        ]
        if backup.kind == Backup.Kind.BASE:
            facts.append(("Recover to", str(moment) if moment else "as late as WAL was shipped"))
        if took := timings_in_words(self.timings):
            total = (self.timings or {}).get("total")
            facts.append(("Took", f"{took}{f' (total {total:.1f} s)' if total else ''}"))
        two = "two people (requester and approver)" if self.requires_two_people() else "one person"
        return [*facts, ("Needs", two)]

    def related(self) -> list[tuple[str, models.Model]]:
        found: list[tuple[str, models.Model]] = [
            ("Backup", self.backup), ("Target", self.backup.target),
        ]  # fmt: skip
        if self.safety_backup_id:
            found.append(("Safety backup taken first", self.safety_backup))
        return found

    def fingerprint(self) -> str:
        return f"restore:{self.pk}"

    def run(self) -> dict:
        # backups.restore imports these models: import at use.
        from backups.restore import carry_out_restore

        return carry_out_restore(self)

    def on_failed(self, message: str) -> None:
        raise_incident(
            source="backups",
            fingerprint=self.fingerprint(),
            title=f"Restore of {self.backup_id} failed",
            priority="high",
            component="backups",
            details={"backup": self.backup_id, "error": message[:500]},
        )

    def interruption_message(self) -> str:
        if self.mode == self.Mode.KEEP:
            return (
                "the worker running the recovery stopped (its lease ran out); marked failed. "
                "Its scratch server and files are removed by the next clean-up."
            )
        if self.mode == self.Mode.NEW:
            look = f"database {self.new_database} (it may be half restored)"
        else:
            name = self.backup.target.db.dbname
            look = f"databases {name}, {name}_incoming_* and {name}_pre_restore_*"
        return (
            "the worker running the restore stopped (its lease ran out); marked failed. "
            f"Check {look} before requesting it again."
        )

    def stop_kept_server(self, user) -> bool:
        """Stop the recovered server kept for this request: approvers only. True when it
        stopped at once; False when its host's clean-up stops it (another host ran it)."""
        if not user.has_perm(self.APPROVE_PERMISSION):
            raise PermissionDenied("Only an approver may stop the recovered server.")
        if self.mode != self.Mode.KEEP or not self.scratch_folder or self.scratch_stopped_at:
            raise ValidationError("There is no recovered server running for this request.")
        from backups.pitr import stop_kept

        return stop_kept(self)

    def drop_old_database(self, user) -> None:
        """After a replace, the kept database goes only when an approver says so."""
        if not user.has_perm(self.APPROVE_PERMISSION):
            raise PermissionDenied("Only an approver may drop the kept database.")
        if not self.old_database or self.old_database_dropped_at:
            raise ValidationError("There is no kept database to drop.")
        self.backup.target.db.drop_database(self.old_database)
        self.old_database_dropped_at = timezone.now()
        RestoreRequest.objects.filter(pk=self.pk).update(
            old_database_dropped_at=self.old_database_dropped_at
        )


def new_spool_key() -> str:
    return secrets.token_hex(8)


class WalArchive(models.Model):
    """Continuous WAL of a PostgreSQL target: streamed through a physical replication slot
    by one receiver across all hosts (the lease below), each segment shipped through the
    backup pipeline (zstd → age → SHA-256 → storage) as its own object."""

    class Status(models.TextChoices):
        WAITING = "waiting", "Waiting for a receiver"
        STREAMING = "streaming", "Streaming"
        FAILING = "failing", "Failing (restarting)"
        UNAVAILABLE = "unavailable", "Replication not available"

    target = models.OneToOneField(DatabaseTarget, on_delete=models.CASCADE, related_name="wal")
    storage = models.ForeignKey(StorageLocation, on_delete=models.PROTECT, related_name="+")
    enabled = models.BooleanField(default=True)
    slot_name = models.CharField(max_length=63, blank=True, editable=False)
    partial_every_seconds = models.PositiveIntegerField(
        default=30, help_text="How often the open segment is shipped too (at most 60)."
    )
    max_retained_mb = models.PositiveIntegerField(
        default=2048, help_text="An incident when the slot holds more WAL on the server than this."
    )
    # The receiver: who holds the stream, and what it last did.
    holder = models.CharField(max_length=200, blank=True, editable=False)
    lease_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    status = models.CharField(
        max_length=12, choices=Status.choices, default=Status.WAITING, editable=False
    )
    error = models.TextField(blank=True, editable=False)
    covered_until = models.DateTimeField(
        null=True, blank=True, editable=False,
        help_text="Every WAL record written before this moment is stored.",
    )  # fmt: skip
    last_segment = models.CharField(max_length=40, blank=True, editable=False)
    retained_bytes = models.BigIntegerField(null=True, blank=True, editable=False)
    switched_on_at = models.DateTimeField(default=timezone.now, editable=False)
    # Names the receiver's local folder: new with each switch on (a new slot), so a
    # receiver never resumes from what an earlier slot streamed.
    spool_key = models.CharField(max_length=32, default=new_spool_key, editable=False)
    system_identifier = ""  # the server's, set by the receiver while it streams

    class Meta:
        verbose_name = "WAL archive"

    def __str__(self) -> str:
        return f"WAL of {self.target}"

    def save(self, *args, **kwargs):
        if not self.slot_name:
            self.slot_name = f"opsconsole_{self.target_id}"
        super().save(*args, **kwargs)

    def clean(self) -> None:
        if self.target_id and not self.target.db.streams_wal:
            raise ValidationError(f"Continuous WAL is not for {self.target.db.label} targets.")
        if not 1 <= self.partial_every_seconds <= 60:
            raise ValidationError({"partial_every_seconds": "From 1 to 60 seconds."})

    BASE_POLICY = ("base", "0 3 * * 0", 30)  # weekly, kept 30 days

    @classmethod
    def switch_on(cls, target: DatabaseTarget, user, storage: StorageLocation | None = None):
        """Continuous WAL for `target`: refused in one line where the server cannot stream
        it; a weekly base-backup policy, a first base backup now, and the hourly dump off."""
        if not user.has_perm("backups.change_databasetarget"):
            raise PermissionDenied("You may not change this target's backups.")
        if not target.db.streams_wal:
            raise ValidationError(f"{target}: continuous WAL is not for {target.db.label} targets.")
        problem = target.db.replication_problem()
        if problem:
            raise ValidationError(f"{target}: WAL cannot be streamed: {problem}.")
        with transaction.atomic():
            archive, _ = cls.objects.update_or_create(
                target=target,
                defaults={"enabled": True, "storage": storage or StorageLocation.default(),
                          "spool_key": new_spool_key(), "switched_on_at": timezone.now()},
            )  # fmt: skip
            try:
                target.db.create_slot(archive.slot_name)
            except Exception as exc:
                raise ValidationError(
                    f"{target}: the replication slot could not be created ({type(exc).__name__})."
                ) from None
            kind, cron, days = cls.BASE_POLICY
            policy, _ = BackupPolicy.objects.update_or_create(
                name=f"{target.name} {kind}",
                defaults={"target": target, "storage": archive.storage, "kind": kind,
                          "schedule": cron, "retention_days": days, "enabled": True},
            )  # fmt: skip
            policy.sync_schedule()
            for hourly in target.policies.filter(kind=BackupPolicy.Kind.HOURLY, enabled=True):
                hourly.enabled = False
                hourly.save()
                hourly.sync_schedule()
            first = policy.start(trigger=Backup.Trigger.MANUAL, user=user)
            transaction.on_commit(lambda: enqueue("backups.tasks.run_backup", first.pk))
        return archive, first

    def switch_off(self, user) -> None:
        """Back to dumps: the hourly one on again; the slot is dropped so the server stops
        keeping WAL for a receiver that will not come."""
        if not user.has_perm("backups.change_databasetarget"):
            raise PermissionDenied("You may not change this target's backups.")
        WalArchive.objects.filter(pk=self.pk).update(
            enabled=False, holder="", lease_expires_at=None
        )
        for policy in self.target.policies.filter(
            kind__in=[BackupPolicy.Kind.HOURLY, BackupPolicy.Kind.BASE]
        ):
            policy.enabled = policy.kind == BackupPolicy.Kind.HOURLY
            policy.save()
            policy.sync_schedule()
        try:
            # The receiver may still be connected: its connection is ended, then the slot
            # dropped, or the server would keep WAL for it until its disk is full.
            with self.target.db.connect(autocommit=True) as conn:
                for _ in range(20):
                    conn.execute(
                        "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots "
                        "WHERE slot_name = %s AND active",
                        [self.slot_name],
                    )
                    conn.execute(
                        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                        "WHERE slot_name = %s AND NOT active",
                        [self.slot_name],
                    )
                    left = conn.execute(
                        "SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s",
                        [self.slot_name],
                    ).fetchone()[0]
                    if not left:
                        break
                    time.sleep(0.5)
                else:
                    raise RuntimeError("the slot is still in use")
        except Exception as exc:
            WalArchive.objects.filter(pk=self.pk).update(
                error=f"the slot could not be dropped ({type(exc).__name__}); drop "
                f"{self.slot_name} on the server by hand"
            )

    def fingerprint(self) -> str:
        return f"wal:{self.pk}"

    def prefix(self) -> str:
        # Per archive: two targets whose names slug alike never share WAL objects.
        slug = re.sub(r"[^A-Za-z0-9._-]+", "-", self.target.name).strip("-") or "target"
        return f"{slug}/wal-{self.pk}"

    def object_key(self, name: str, partial: bool = False) -> str:
        return f"{self.prefix()}/{name}{'.partial' if partial else ''}.zst.age"

    def recovery_point_age(self, now: datetime | None = None) -> float | None:
        """Seconds of writes that would be lost now (the live RPO), or None before any."""
        if self.covered_until is None:
            return None
        return max(0.0, ((now or timezone.now()) - self.covered_until).total_seconds())


class RestorePoint(models.Model):
    """A named moment in a target's WAL (pg_create_restore_point), e.g. before a risky
    migration: a restore can recover exactly to it."""

    archive = models.ForeignKey(WalArchive, on_delete=models.CASCADE, related_name="points")
    name = models.CharField(max_length=63)
    lsn = models.CharField(max_length=40)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.archive.target}, {self.created_at:%Y-%m-%d %H:%M} UTC)"

    @classmethod
    def create(cls, archive: WalArchive, name: str, user) -> RestorePoint:
        if not user.has_perm(permissions.RUN_JOBS):
            raise PermissionDenied("You may not create restore points.")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}", name or ""):
            raise ValidationError("A restore point's name: letters, digits, _ . - (at most 63).")
        with archive.target.db.connect(autocommit=True) as conn:
            lsn = conn.execute("SELECT pg_create_restore_point(%s)::text", [name]).fetchone()[0]
            conn.execute("SELECT pg_switch_wal()")  # shipped whole now, not at the next fill
        return cls.objects.create(archive=archive, name=name, lsn=lsn, created_by=user)


class WalSegment(models.Model):
    """One shipped WAL file: a whole segment, a timeline history, or the open segment so
    far (`partial`, replaced each time it is shipped, removed once the whole one is)."""

    archive = models.ForeignKey(WalArchive, on_delete=models.CASCADE, related_name="segments")
    name = models.CharField(max_length=40)
    partial = models.BooleanField(default=False)
    storage_key = models.CharField(max_length=500)
    sha256 = models.CharField(max_length=64)
    bytes_stored = models.BigIntegerField()
    raw_sha256 = models.CharField(max_length=64, help_text="Of the WAL itself, before zstd/age.")
    shipped_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["archive", "name", "partial"], name="one_wal_object")
        ]

    def __str__(self) -> str:
        return f"{self.name}{' (partial)' if self.partial else ''}"
