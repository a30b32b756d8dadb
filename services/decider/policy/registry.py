"""The policies in force, reloaded from a directory; a broken file keeps its last good policies."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from services.decider.engine.spec import ControllerSettings, TargetPolicy
from services.decider.policy.loader import digest, load_policy_file, policy_files
from shared.config import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ReloadReport:
    changed: bool
    """True when the set of policies in force changed."""
    loaded: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    errors: tuple[ConfigError, ...] = ()


@dataclass(slots=True)
class _FileEntry:
    digest: str
    policies: list[TargetPolicy] = field(default_factory=list)
    """The last good policies of the file (kept while a newer version is invalid)."""
    error: str = ""


class PolicyRegistry:
    """Policies by target, from every file of one directory."""

    def __init__(self, directory: Path, settings: ControllerSettings) -> None:
        self.directory = directory
        self.settings = settings
        self._files: dict[str, _FileEntry] = {}
        self.policies: dict[str, TargetPolicy] = {}

    def load_strict(self) -> None:
        """First load: any invalid file is an error (start-up stops with file, field and reason)."""
        report = self.reload()
        if report.errors:
            raise report.errors[0]

    def reload(self) -> ReloadReport:
        """Re-read changed files; keep the last good policies of files that became invalid."""
        try:
            paths = policy_files(self.directory)
        except ConfigError as exc:
            return ReloadReport(False, errors=(exc,))
        seen: set[str] = set()
        errors: list[ConfigError] = []
        loaded: list[str] = []
        for path in paths:
            key = path.name
            seen.add(key)
            current_digest = digest(path)
            entry = self._files.get(key)
            if entry is not None and entry.digest == current_digest:
                continue
            try:
                policies = load_policy_file(path, self.settings)
            except ConfigError as exc:
                errors.append(exc)
                if entry is None:
                    self._files[key] = _FileEntry(current_digest, [], str(exc))
                else:
                    entry.digest, entry.error = current_digest, str(exc)
                continue
            self._files[key] = _FileEntry(current_digest, policies)
            loaded.append(key)
        removed = [key for key in self._files if key not in seen]
        for key in removed:
            del self._files[key]
        new = self._assemble(errors)
        changed = new != self.policies
        self.policies = new
        return ReloadReport(changed, tuple(loaded), tuple(removed), tuple(errors))

    def _assemble(self, errors: list[ConfigError]) -> dict[str, TargetPolicy]:
        result: dict[str, TargetPolicy] = {}
        for key in sorted(self._files):
            for policy in self._files[key].policies:
                other = result.get(policy.target)
                if other is not None:
                    errors.append(
                        ConfigError(
                            policy.source,
                            "spec.scaleTargetRef.name",
                            f"target {policy.target!r} already has a policy in {other.source}",
                        )
                    )
                    continue
                result[policy.target] = policy
        return result

    def file_errors(self) -> dict[str, str]:
        """Files whose newest version is invalid, with the reason (their last good version stays in force)."""
        return {key: entry.error for key, entry in self._files.items() if entry.error}
