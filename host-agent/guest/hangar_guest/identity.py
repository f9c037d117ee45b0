"""Who `user` and root are: uids, groups and base environment, re-read when /etc/group changes."""

import grp
import os
import pwd

USER_NAME = "user"


class Identity:
    """Uid, groups and base environment of `user` and root, re-read when /etc/group changes."""

    def __init__(self):
        self._group_mtime = None
        self._user = None

    def resolve(self, who):
        if who == "root":
            return {
                "uid": 0, "gid": 0, "groups": [], "home": "/root",
                "env": {
                    "HOME": "/root", "USER": "root", "LOGNAME": "root", "SHELL": "/bin/bash",
                    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "LANG": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive",
                },
            }
        try:
            mtime = os.stat("/etc/group").st_mtime_ns
        except OSError:
            mtime = None
        if self._user is None or mtime != self._group_mtime:
            self._group_mtime = mtime
            self._user = self._load_user()
        return self._user

    @staticmethod
    def _load_user():
        try:
            pw = pwd.getpwnam(USER_NAME)
            uid, gid, home = pw.pw_uid, pw.pw_gid, pw.pw_dir
        except KeyError:
            uid, gid, home = 1000, 1000, "/home/user"
        groups = sorted({g.gr_gid for g in grp.getgrall() if USER_NAME in g.gr_mem} - {gid})
        return {
            "uid": uid, "gid": gid, "groups": groups, "home": home,
            "env": {
                "HOME": home, "USER": USER_NAME, "LOGNAME": USER_NAME, "SHELL": "/bin/bash",
                "PATH": f"{home}/.local/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "LANG": "C.UTF-8",
            },
        }
