"""django-celery-beat's ``DatabaseScheduler`` with singleton decisions.

::

    celery -A proj beat -S ccs_beat.contrib.django.schedulers:SingletonDatabaseScheduler

Each periodic task's ``singleton`` option comes from its
:class:`~ccs_beat.contrib.django.models.SingletonSettings` row (no row: the app
default). Entries from ``beat_schedule`` may carry ``options["singleton"]`` as
with :class:`ccs_beat.SingletonScheduler`; it is written to their row at start.

What differs from the stock scheduler, and why:

* a row that cannot be parsed (written by a script past the admin's
  validation) leaves its periodic task out of the schedule, with an error
  naming it, until the row is fixed -- sending it unchecked could run it
  twice; the other tasks go on;
* a skipped run advances ``last_run_at`` as beat does, but does not count in
  ``total_run_count``: the count is of runs actually sent, so a ``one_off``
  task that was skipped is not disabled before it ever ran;
* the ledger lives in the ``SingletonLedger`` table and each decision is
  written to ``SingletonDecision`` for the admin, both at the end of a burst;
  each emission is first inserted into ``SingletonJournal`` (write-ahead), and
  saving the ledger deletes those rows in the same transaction.
"""

from __future__ import annotations

from typing import Any
from weakref import WeakKeyDictionary

from django.db import close_old_connections, transaction
from django.utils import timezone
from django_celery_beat.models import PeriodicTask
from django_celery_beat.schedulers import DatabaseScheduler, ModelEntry
from kombu.utils.json import loads

from ...checks import CheckReport
from ...coordinator import Coordinator
from ...entries import OPTION
from ...errors import ConfigurationError, UnkeyableError
from ...events import BeatAction, DecisionEvent
from ...identity import task_key
from ...logs import get_logger, printable
from ...policies import task_default
from ...policy import Policy, Settings, load_settings, parse_policy
from ...scheduler import SingletonSchedulerMixin
from .models import SingletonDecision, SingletonSettings
from .options import FIELD_LABELS, field_errors, key_to_text, singleton_option
from .store import JSON_ERRORS, DatabaseLedgerStore

logger = get_logger("ccs_beat")

_UNSET = object()

#: what kombu's decoder (django-celery-beat's) can raise besides bad JSON: its
#: type markers ``{"__type__": "decimal", "__value__": "x"}`` run converters
DECODE_ERRORS = (*JSON_ERRORS, ArithmeticError, AttributeError, LookupError)


def row_option(model: PeriodicTask, settings: Settings, default: Policy | None = None) -> Any:
    """The ``singleton`` option of a periodic task's row, or None without a row.

    Raises :class:`~ccs_beat.ConfigurationError` naming the task and the field
    for a row that does not parse, or naming the task when its arguments cannot
    be keyed under its policy (the row's, else ``default``: the task's
    declaration or ``ccs_beat_default_policy``, see :func:`ccs_beat.task.task_default`).
    The row is data: its identity may name only key functions registered in
    code (``settings.key_functions``).
    """
    default = settings.default_policy if default is None else default
    try:
        row = model.singleton
    except SingletonSettings.DoesNotExist:
        row = None
    where = f"periodic task {model.name!r}: singleton settings"
    if row is None:
        option, policy = None, default
    elif row.enabled is False:
        return False   # overlap allowed: the other fields are not used
    else:
        problem = fields_problem(row.fields(), settings, where, default)
        if problem:
            raise ConfigurationError(problem)
        option = row.as_option()
        policy = parse_policy(option, default=default, where=where,
                              functions=settings.key_functions)
    if policy.checked:
        check_arguments(model, policy)
    return option




def row_arguments(model: PeriodicTask) -> tuple[list[Any], dict[str, Any]]:
    """The row's args and kwargs as a list and a dict, or ConfigurationError
    naming the task (beat needs a list and a dict to send it at all)."""
    try:
        # empty values (null, [] for kwargs, {} for args) are sent as empty, as
        # Celery does: a script writing json.dumps(None) means "no arguments"
        args, kwargs = loads(model.args or "[]") or [], loads(model.kwargs or "{}") or {}
    except DECODE_ERRORS as exc:
        raise ConfigurationError(f"periodic task {model.name!r}: args or kwargs are not "
                                 f"usable JSON ({str(exc)[:120]})") from exc
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise ConfigurationError(
            f"periodic task {model.name!r}: args must be a JSON list and kwargs a JSON "
            f"object, got {type(args).__name__} and {type(kwargs).__name__}")
    return args, kwargs


def row_schedule(model: PeriodicTask) -> Any:
    """The row's schedule object, or ConfigurationError naming the task (an
    interval no timedelta holds, a crontab in an unknown time zone, none)."""
    try:
        found = model.schedule
    except Exception as exc:  # a row is data: any failure is that row's
        raise ConfigurationError(f"periodic task {model.name!r}: its schedule cannot be "
                                 f"used ({exc!r:.160})") from exc
    if found is None:
        raise ConfigurationError(f"periodic task {model.name!r} has no schedule")
    return found


def row_headers(model: PeriodicTask) -> dict[str, Any]:
    """The row's ``headers`` field, which must be a JSON object."""
    try:
        headers = loads(model.headers or "{}")
    except DECODE_ERRORS as exc:
        raise ConfigurationError(f"periodic task {model.name!r}: headers are not usable "
                                 f"JSON ({str(exc)[:120]})") from exc
    if not isinstance(headers, dict):
        raise ConfigurationError(f"periodic task {model.name!r}: headers must be a JSON "
                                 f"object, got {type(headers).__name__}")
    return headers


def load_problem(model: PeriodicTask) -> str | None:
    """Why beat cannot load the row at all, whatever its singleton settings
    (its schedule, arguments or headers), or None."""
    try:
        row_schedule(model)
        row_arguments(model)
        row_headers(model)
    except ConfigurationError as exc:
        return str(exc)
    return None


def check_arguments(model: PeriodicTask, policy: Policy) -> None:
    """Raise naming the task if its arguments are not a JSON list and object, or
    cannot be keyed under ``policy``."""
    args, kwargs = row_arguments(model)
    try:
        task_key(model.task, args, kwargs, policy.key)
    except UnkeyableError as exc:
        raise ConfigurationError(
            f"periodic task {model.name!r}: arguments cannot be keyed for its singleton "
            f"check ({policy.key.describe()}): {exc}") from exc


def fields_problem(fields: dict[str, Any], settings: Settings, where: str,
                   default: Policy | None = None) -> str | None:
    """What is wrong with singleton settings ``fields``, naming each field, or None."""
    errors = field_errors(fields, where=where, functions=settings.key_functions,
                          default=settings.default_policy if default is None else default)
    if not errors:
        return None
    return f"{where}: " + "; ".join(f"field {FIELD_LABELS.get(name, name)}: {message}"
                                    for name, message in errors.items())


def arguments_problem(model: PeriodicTask, fields: dict[str, Any] | None,
                      settings: Settings, default: Policy | None = None) -> str | None:
    """Why beat would leave ``model`` out because its arguments cannot be keyed
    under the singleton settings ``fields`` (None: no row, the app default), or
    None. The admin asks before it saves, so that nobody learns it from beat's
    log; a bad field is reported on the field, not here."""
    default = settings.default_policy if default is None else default
    if fields is None:
        policy = default
    elif fields.get("enabled") is False:
        return None
    else:
        try:
            policy = parse_policy(singleton_option(**fields), default=default,
                                  functions=settings.key_functions)
        except ConfigurationError:
            return None
    if not policy.checked:
        return None
    try:
        check_arguments(model, policy)
    except ConfigurationError as exc:
        return str(exc)
    return None


def check_rows(coordinator: Coordinator) -> CheckReport:
    """``celery ccs check`` for the rows beat would load: each enabled periodic
    task, validated as :class:`SingletonModelEntry` validates it."""
    settings, report = coordinator.settings, CheckReport()
    for model in PeriodicTask.objects.filter(enabled=True).select_related("singleton") \
            .order_by("name"):
        problem = load_problem(model)   # beat leaves such a row out, whatever its policy
        if problem:
            report.problems.append(problem)
            continue
        try:
            default = task_default(coordinator.app, model.task, settings)
            option = row_option(model, settings, default)
        except ConfigurationError as exc:
            report.problems.append(str(exc))
            continue
        report.policies[model.name] = parse_policy(
            option, default=default, functions=settings.key_functions)
    return report


#: per app, the settings beat validates rows with (refreshed at each schedule load)
_ENTRY_SETTINGS: WeakKeyDictionary[Any, Settings] = WeakKeyDictionary()


def entry_settings(app: Any) -> Settings:
    """The settings to validate a row with: those of the beat that loads the
    schedule, else the app's (a ModelEntry built outside beat)."""
    settings = _ENTRY_SETTINGS.get(app)
    return settings if settings is not None else load_settings(app.conf)


class SingletonModelEntry(ModelEntry):
    """A ``ModelEntry`` whose options carry the task's ``singleton`` setting."""

    def __init__(self, model: PeriodicTask, app: Any = None) -> None:
        try:
            super().__init__(model, app=app)
        except Exception as exc:  # a row is data: any failure is that row's
            # an interval no timedelta holds, a crontab in no time zone, no
            # schedule at all, kombu's decoder failing on its type markers:
            # stock django-celery-beat dies on these
            # django-celery-beat leaves such a row out silently (headers that
            # are not JSON, say): say which one, and why
            logger.error("ccs_beat: periodic task %r cannot be loaded (%s); it is left out "
                         "of the schedule until it is fixed", model.name, exc, exc_info=True)
            # DatabaseScheduler.all_as_schedule() leaves out entries that raise ValueError
            raise ValueError(str(exc)) from exc
        # ModelEntry.__next__ builds a new entry around the same model after
        # every run: validate a row once per model instance loaded from the
        # database (a reload brings new instances), not on every run
        cached = model.__dict__.get("_ccs_option", _UNSET)
        if cached is not _UNSET:
            if cached is not None:
                self.options[OPTION] = cached
            return
        problem = load_problem(model)
        if problem:   # args that are no list, headers that are no object: not sendable
            logger.error("ccs_beat: %s; leaving this task out of the schedule until it is "
                         "fixed", problem)
            raise ValueError(problem)
        try:
            settings = entry_settings(self.app)
            option = row_option(model, settings, task_default(self.app, model.task, settings))
        except ConfigurationError as exc:
            logger.error("ccs_beat: %s; leaving this task out of the schedule until its "
                         "singleton settings are fixed", exc)
            # DatabaseScheduler.all_as_schedule() leaves out entries that raise ValueError
            raise ValueError(str(exc)) from exc
        model.__dict__["_ccs_option"] = option
        if option is not None:
            self.options[OPTION] = option


def row_fields(option: Any, where: str, settings: Settings) -> dict[str, Any]:
    """SingletonSettings field values for a ``beat_schedule`` ``singleton`` option."""
    policy = parse_policy(option, default=settings.default_policy, where=where,
                          functions=settings.key_functions)   # raises, naming it
    if option is False or not policy.checked:
        return {"enabled": False}
    fields: dict[str, Any] = {"enabled": True, "overlap": policy.overlap,
                              "key": "", "on_unknown": "", "expires": None}
    if isinstance(option, dict):
        if "key" in option:
            fields["key"] = key_to_text(policy.key)
            # the row holds the function's name: it must lead back to this very
            # function (raises, naming the entry, when two share a name)
            if callable(option["key"]):
                settings.key_functions.find(fields["key"], where)
        if "on_unknown" in option:
            fields["on_unknown"] = policy.on_unknown
        if "expires" in option:
            fields["expires"] = policy.expires
    return fields


def _clip(text: str, length: int = 255) -> str:
    """Text from a message or a reply, fit for a column: control characters
    escaped (PostgreSQL refuses NUL) and clipped to the column's length."""
    text = printable(text)
    return text if len(text) <= length else text[:length - 1] + "…"


class SingletonDatabaseScheduler(SingletonSchedulerMixin, DatabaseScheduler):
    """``DatabaseScheduler`` that declines to emit while an identical task is
    queued or running. See the module docstring."""

    Entry = SingletonModelEntry

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._ccs_decisions: dict[int, dict[str, Any]] = {}
        super().__init__(*args, **kwargs)

    # -- schedule ---------------------------------------------------------------

    def all_as_schedule(self) -> dict[str, Any]:
        # rows are validated against the settings as they are now
        _ENTRY_SETTINGS[self.app] = load_settings(self.app.conf)
        return super().all_as_schedule()

    def enabled_models_qs(self) -> Any:
        return super().enabled_models_qs().select_related("singleton")

    def enabled_models(self) -> list[Any]:
        try:
            return list(self.enabled_models_qs())
        except Exception as exc:
            # django-celery-beat leaves out crontabs not due within hours; that
            # query reads every crontab's time zone, and one bad row breaks it
            # for every task: load them all, and let the bad row alone fail
            logger.error("ccs_beat: django-celery-beat's query of the periodic tasks failed "
                         "(%r), a damaged crontab row perhaps; loading every enabled task "
                         "without its filter", exc, exc_info=True)
            # (not .enabled(): its prefetch of every schedule fails the same way)
            return list(self.Model.objects.filter(enabled=True).select_related("singleton"))

    def update_from_dict(self, mapping: dict[str, Any]) -> None:
        """Entries from ``beat_schedule``: their ``singleton`` option becomes
        their SingletonSettings row (a bad one stops beat, as in SingletonScheduler)."""
        wanted = {}
        settings = load_settings(self.app.conf)
        for name, fields in mapping.items():
            option = (fields.get("options") or {}).get(OPTION)
            if option is not None:
                wanted[name] = row_fields(option, f"beat entry {name!r}: {OPTION}", settings)
        super().update_from_dict(mapping)
        for name, values in wanted.items():
            task = PeriodicTask.objects.filter(name=name).first()
            if task is None:
                continue
            SingletonSettings.objects.update_or_create(periodic_task=task, defaults=values)
            entry = (self._schedule or {}).get(name)
            if entry is not None:
                entry.options[OPTION] = mapping[name]["options"][OPTION]
                entry.model.__dict__["_ccs_option"] = entry.options[OPTION]

    def ccs_entry_names(self) -> set[str]:
        # every enabled row, not only those django-celery-beat loaded: it leaves
        # out crontabs not due within hours, whose ledger and buffered run stay
        return set(PeriodicTask.objects.filter(enabled=True).values_list("name", flat=True))

    def ccs_entry(self, name: str) -> Any:
        """The entry ``name``: from the loaded schedule, else from its row
        (a crontab django-celery-beat has not loaded, being hours from due)."""
        entry = self.schedule.get(name)
        if entry is not None:
            return entry
        model = PeriodicTask.objects.filter(name=name, enabled=True) \
            .select_related("singleton").first()
        if model is None or (model.expires is not None and model.expires <= timezone.now()):
            return None   # gone, off, or expired (a loaded entry would switch itself off)
        try:
            return self.Entry(model, app=self.app)
        except ValueError:   # logged, naming the row
            return None

    def ccs_reserved(self, entry: Any) -> None:
        # DatabaseScheduler.reserve() leaves the old entry in _schedule, from
        # which a rebuilt heap would make it due again at its old time
        if self._schedule is not None and entry.name in self._schedule:
            self._schedule[entry.name] = entry
            return
        # an entry django-celery-beat has not loaded (a crontab hours from due):
        # its sync() saves only loaded ones, so save the run here -- a one-off
        # is then switched off when it is loaded, not run again
        self._dirty.discard(entry.name)
        try:
            close_old_connections()
            entry.save()
        except Exception as exc:  # noqa: BLE001 - the run is sent anyway; say what is lost
            logger.warning("ccs_beat: could not record the buffered run of %r in its row "
                           "(%r); its run count there stays as it was", entry.name, exc)

    def ccs_task_names(self) -> set[str]:
        # self.schedule would ask the database whether anything changed
        return {entry.task for entry in (self._schedule or {}).values()}

    # -- ledger and decisions --------------------------------------------------------

    ccs_store = DatabaseLedgerStore
    #: ``celery ccs check`` validates the periodic task rows with it
    ccs_check_entries = staticmethod(check_rows)

    def ccs_runs_once(self, entry: Any) -> bool:
        return getattr(getattr(entry, "model", None), "one_off", False) is True

    def ccs_on_decision(self, entry: Any, event: DecisionEvent) -> None:
        model = getattr(entry, "model", None)
        if model is None or model.pk is None:
            return
        skipped = event.action is BeatAction.SKIP
        if skipped:
            # total_run_count counts runs sent (reserve() counted this one)
            model.total_run_count = max(0, model.total_run_count - 1)
            entry.total_run_count = model.total_run_count
        blocker = event.blocker
        # ids and worker names come from messages and replies: clip them to
        # the columns, or one long id would lose the whole burst's decisions
        self._ccs_decisions[model.pk] = {
            "decision": SingletonDecision.SKIPPED if skipped else SingletonDecision.EMITTED,
            "decided_at": timezone.now(),
            "reason": printable(event.detail),
            "task_id": _clip(event.task_id or ""),
            "blocker_id": _clip(blocker.task_id if blocker else ""),
            "blocker_state": _clip(blocker.state if blocker else "", 16),
            "blocker_worker": _clip((blocker.worker or "") if blocker else ""),
        }

    def ccs_end_burst(self) -> None:
        if not self._ccs_decisions:
            return
        decisions, self._ccs_decisions = self._ccs_decisions, {}
        close_old_connections()
        existing = set(PeriodicTask.objects.filter(pk__in=decisions).values_list("pk", flat=True))
        with transaction.atomic():
            for pk, values in decisions.items():
                if pk in existing:
                    SingletonDecision.objects.update_or_create(periodic_task_id=pk,
                                                               defaults=values)

    @property
    def info(self) -> str:
        return super().info + "\n    . ccs_beat -> singleton checks on (django-celery-beat)"
