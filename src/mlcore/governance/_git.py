"""The ``git`` command line, run with explicit arguments and a fixed environment (no user or
system config, author and committer from the actor, a fixed time zone) so that a governed
config repository behaves the same on every machine.

The repository is a workspace's ``configs/`` folder; its branch ``main`` holds the merged
policy overlays. Branches and merges are made with plumbing commands (a private index file),
never touching the folder's files: only :func:`materialise` writes them (apply, rollback).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from mlcore.errors import ConfigError, FatalError

MAIN = "refs/heads/main"
_TIMEOUT_S = 60


@dataclass(frozen=True)
class Git:
    """A config repository (``folder/.git``) and who acts on it."""

    folder: Path
    actor: str = "mlcore"

    def env(self, index: Path | None = None) -> dict[str, str]:
        """The fixed environment every git call runs with."""
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.folder),
            "LANG": "C",
            "LC_ALL": "C",
            "TZ": "UTC",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_AUTHOR_NAME": self.actor,
            "GIT_AUTHOR_EMAIL": f"{_mail(self.actor)}@mlcore.invalid",
            "GIT_COMMITTER_NAME": self.actor,
            "GIT_COMMITTER_EMAIL": f"{_mail(self.actor)}@mlcore.invalid",
            "GIT_DIR": str(self.folder / ".git"),
            "GIT_WORK_TREE": str(self.folder),
        }
        if index is not None:
            env["GIT_INDEX_FILE"] = str(index)
        return env

    def run(self, *args: str, stdin: bytes | None = None, index: Path | None = None,
            ok: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess[bytes]:  # fmt: skip
        """``git ARGS`` in the repository; a FatalError naming the command if it fails."""
        try:
            # git from PATH (as the user runs it), explicit arguments, no shell
            done = subprocess.run(  # noqa: S603
                ["git", *args],  # noqa: S607
                input=stdin, capture_output=True, env=self.env(index), cwd=self.folder,
                timeout=_TIMEOUT_S, check=False,
            )  # fmt: skip
        except FileNotFoundError:
            raise ConfigError(
                "CONFIG_GOV_GIT_MISSING",
                "governed configs need the git command line, which is not installed (PATH)",
            ) from None
        except subprocess.TimeoutExpired:
            raise FatalError(
                "CONFIG_GOV_GIT_FAILED", f"git {args[0]} in {self.folder}: no answer in "
                f"{_TIMEOUT_S} s", details={"folder": str(self.folder)},
            ) from None  # fmt: skip
        if done.returncode not in ok:
            why = (done.stderr.decode("utf-8", "replace").strip().splitlines() or ["?"])[-1]
            raise FatalError(
                "CONFIG_GOV_GIT_FAILED", f"git {args[0]} in {self.folder} failed: {why}",
                details={"folder": str(self.folder)},
            )  # fmt: skip
        return done

    def out(self, *args: str, stdin: bytes | None = None, index: Path | None = None) -> str:
        """The command's standard output, stripped."""
        return self.run(*args, stdin=stdin, index=index).stdout.decode().strip()

    def resolve(self, ref: str) -> str | None:
        """The commit ``ref`` names, or None."""
        done = self.run("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", ok=(0, 1))
        return done.stdout.decode().strip() or None

    def files(self, commit: str) -> dict[str, bytes]:
        """Every file of ``commit``'s tree (top level only: overlays are flat)."""
        names = self.out("ls-tree", "--name-only", commit).splitlines()
        return {name: self.run("cat-file", "blob", f"{commit}:{name}").stdout for name in names}

    def commit_files(self, parents: list[str], files: Mapping[str, bytes], message: str,
                     *, replace: bool = False) -> str:  # fmt: skip
        """A commit of ``files`` over the first parent's tree (or exactly ``files`` when
        ``replace``), made without touching the folder; its SHA."""
        index = self.folder / ".git" / f"mlcore-index-{os.getpid()}"
        try:
            if parents and not replace:
                self.run("read-tree", parents[0], index=index)
            else:
                self.run("read-tree", "--empty", index=index)
            for name, body in sorted(files.items()):
                blob = self.out("hash-object", "-w", "--stdin", stdin=body)
                self.run("update-index", "--add", "--cacheinfo", f"100644,{blob},{name}",
                         index=index)  # fmt: skip
            tree = self.out("write-tree", index=index)
        finally:
            index.unlink(missing_ok=True)
        return self.commit_tree(tree, parents, message)

    def commit_tree(self, tree: str, parents: list[str], message: str) -> str:
        """A commit of ``tree`` with ``parents``; its SHA."""
        args = ["commit-tree", tree]
        for p in parents:
            args += ["-p", p]
        return self.out(*args, stdin=message.encode())

    def update_ref(self, ref: str, new: str, old: str | None = None) -> None:
        """Move ``ref`` to ``new``, only if it still points at ``old`` (compare and swap)."""
        self.run("update-ref", ref, new, *([old] if old is not None else []))

    def merge_tree(self, ours: str, theirs: str) -> tuple[str | None, list[str]]:
        """The merged tree of two commits (None and the conflicting files on a conflict)."""
        done = self.run("merge-tree", "--write-tree", "--name-only", "--no-messages", ours,
                        theirs, ok=(0, 1))  # fmt: skip
        lines = done.stdout.decode().splitlines()
        if done.returncode == 0:
            return lines[0], []
        return None, sorted(set(lines[1:]))


def _mail(actor: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "-" for c in actor) or "unknown"


def init_repo(folder: Path, names: frozenset[str], actor: str = "mlcore") -> Git:
    """``folder`` as a config repository: made (``main`` holding the policy files now in the
    folder, one initial commit) when it is not one yet."""
    git = Git(folder, actor)
    if not (folder / ".git").exists():
        Git(folder, actor).run("init", "--quiet", "--initial-branch=main", str(folder))
        present = {p.name: p.read_bytes() for p in sorted(folder.glob("*.yaml"))
                   if p.name in names}  # fmt: skip
        sha = git.commit_files([], present, "configs: initial version (mlcore)", replace=True)
        git.update_ref(MAIN, sha)
    elif git.resolve(MAIN) is None:
        raise ConfigError(
            "CONFIG_GOV_REPO_INVALID",
            f"{folder}/.git is not a config repository with a main branch; move it aside and "
            "run `mlcore configs init-git`",
            details={"folder": str(folder)},
        )
    return git


def materialise(folder: Path, files: Mapping[str, bytes], names: frozenset[str]) -> None:
    """Make the folder's policy files exactly ``files``: each written atomically, policy
    files the version lacks removed."""
    for name, body in sorted(files.items()):
        path = folder / name
        tmp = path.with_name(f".{name}.{os.getpid()}.tmp")
        try:
            tmp.write_bytes(body)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    for path in sorted(folder.glob("*.yaml")):
        if path.name in names and path.name not in files:
            path.unlink()


def drifted(folder: Path, files: Mapping[str, bytes], names: frozenset[str]) -> list[str]:
    """The policy files of the folder that differ from ``files`` (edited, added, removed)."""
    here = {p.name for p in folder.glob("*.yaml") if p.name in names}
    out = []
    for name in sorted(here | set(files)):
        path = folder / name
        if name not in files or name not in here or path.read_bytes() != files[name]:
            out.append(name)
    return out
