"""Op setenv: the computer's environment, applied to every process started after it."""

from .common import GuestError


def handle_setenv(guest, conn, req_id, req, payload):
    env = req["env"]
    if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
        raise GuestError("BAD_REQUEST", "env must map names to strings")
    guest.runner.computer_env = dict(env)
    conn.reply(req_id, {})
