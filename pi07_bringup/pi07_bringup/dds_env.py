"""DDS settings for every pi07 process: the one place they are decided.

Fast DDS's default discovery multicasts on every network interface. pi07 runs on shared machines and on
robots' networks, so by default its nodes talk over loopback only, on a ROS domain of their own:

- ``PI07_DDS_MODE=localhost`` (default): ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` (all traffic on 127.0.0.1).
- ``PI07_DDS_MODE=shm``: Fast DDS shared-memory transport only (large images, one host).
- ``PI07_DDS_MODE=system``: leave the ROS/DDS variables as the user set them (robots spanning several hosts;
  see docs/dds.md).

``ROS_DOMAIN_ID`` is kept when set; otherwise a random domain in [10, 200] is chosen, so that runs on a shared
machine do not see each other. This file only uses the standard library: ``scripts/env.sh`` runs it with
``python3 dds_env.py --shell`` before anything is built.
"""
from __future__ import annotations

import os
import random
import sys
from collections.abc import Mapping

MODES = ('localhost', 'shm', 'system')
DOMAIN_RANGE = (10, 200)  # Fast DDS allows 0..232 on Linux; avoid 0, the domain everything else defaults to.
# Variables this module may set; `system` mode leaves them alone.
MANAGED = ('ROS_AUTOMATIC_DISCOVERY_RANGE', 'FASTDDS_BUILTIN_TRANSPORTS', 'ROS_DOMAIN_ID')


def random_domain_id(rng: random.Random | None = None) -> int:
    rng = rng or random.SystemRandom()
    return rng.randint(*DOMAIN_RANGE)


def dds_environment(base: Mapping[str, str] | None = None, *, domain_id: int | None = None,
                    mode: str | None = None) -> dict[str, str]:
    """Return a copy of ``base`` (default: os.environ) with pi07's DDS settings applied.

    ``domain_id`` forces a domain (tests give each run its own); otherwise an existing ROS_DOMAIN_ID is kept.
    """
    env = dict(os.environ if base is None else base)
    mode = (mode or env.get('PI07_DDS_MODE') or 'localhost').lower()
    if mode not in MODES:
        raise ValueError(f'PI07_DDS_MODE={mode!r}: expected one of {", ".join(MODES)}')
    env['PI07_DDS_MODE'] = mode
    env.setdefault('RMW_IMPLEMENTATION', 'rmw_fastrtps_cpp')
    if mode == 'localhost':
        env['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
        # LOCALHOST overrides any builtin-transport choice anyway; drop it so the settings read true.
        env.pop('FASTDDS_BUILTIN_TRANSPORTS', None)
    elif mode == 'shm':
        env['FASTDDS_BUILTIN_TRANSPORTS'] = 'SHM'
        # The range variable would override the transport choice: SHM alone never leaves the host.
        env.pop('ROS_AUTOMATIC_DISCOVERY_RANGE', None)
    if domain_id is not None:
        env['ROS_DOMAIN_ID'] = str(int(domain_id))
    elif mode != 'system' and not env.get('ROS_DOMAIN_ID'):
        env['ROS_DOMAIN_ID'] = str(random_domain_id())
    return env


def check_safe(env: Mapping[str, str] | None = None) -> None:
    """Raise if ``env`` would run Fast DDS with its default, every-interface discovery."""
    env = os.environ if env is None else env
    if env.get('PI07_DDS_MODE') == 'system':
        return
    if env.get('ROS_AUTOMATIC_DISCOVERY_RANGE') in ('LOCALHOST', 'OFF'):
        return
    if env.get('FASTDDS_BUILTIN_TRANSPORTS', '').upper().startswith('SHM'):
        return
    raise RuntimeError(
        'unsafe DDS settings: set ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST (or source scripts/env.sh, or '
        'PI07_DDS_MODE=system for a multi-host robot network)')


def shell_exports(env: Mapping[str, str], before: Mapping[str, str]) -> str:
    """Bash lines that turn the environment ``before`` into ``env`` for the managed variables."""
    lines = []
    for key in ('PI07_DDS_MODE', 'RMW_IMPLEMENTATION') + MANAGED:
        if key in env:
            if before.get(key) != env[key]:
                lines.append(f"export {key}='{env[key]}'")
        elif key in before:
            lines.append(f'unset {key}')
    return '\n'.join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    env = dds_environment()
    if argv[:1] == ['--shell']:
        print(shell_exports(env, os.environ))
    else:
        for key in ('PI07_DDS_MODE', 'RMW_IMPLEMENTATION') + MANAGED:
            print(f'{key}={env.get(key, "")}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
