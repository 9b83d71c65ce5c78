"""The parameters of a profile: conf/config.yaml (the defaults) with conf/profile/<name>.yaml over it,
composed by Hydra's compose API (`python -m pipeline params --profile NAME` writes them to params.yaml).

Why not DVC's own Hydra mode (`dvc exp run -S profile=...`): it recomposes params.yaml from conf/ at
every `dvc exp run`, silently dropping what a user edited in params.yaml, while `dvc repro` ignores
conf/. Here params.yaml stays the one file the stages and DVC read, and conf/ is only where profiles
come from."""

from __future__ import annotations

from pathlib import Path

import yaml

CONF = Path("conf")


def profiles(conf: Path = CONF) -> list[str]:
    return sorted(p.stem for p in (conf / "profile").glob("*.yaml"))


def compose(profile: str | None = None, conf: Path = CONF) -> dict:
    """The composed parameters (sections -> keys -> values) of `profile` (None: the defaults)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    if profile is not None and profile not in profiles(conf):
        raise ValueError(f"unknown profile {profile!r} (known: {', '.join(profiles(conf))}; "
                         f"each is {conf}/profile/<name>.yaml)")
    with initialize_config_dir(version_base=None, config_dir=str(conf.resolve())):
        config = hydra_compose(config_name="config", overrides=[f"profile={profile}"] if profile else [])
    return OmegaConf.to_container(config)


def write(profile: str | None, out: Path, conf: Path = CONF) -> Path:
    """Write the composed parameters of `profile` to `out` (a params file any stage reads)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    head = f"# composed from {conf}/config.yaml" + (f" and {conf}/profile/{profile}.yaml" if profile else "") + "\n"
    out.write_text(head + yaml.safe_dump(compose(profile, conf), sort_keys=False, width=120))
    return out
