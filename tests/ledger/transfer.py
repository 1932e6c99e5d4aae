#!/usr/bin/env python3
"""transfer.py: writes transfer requests to mining/accounts/<name>/transfer as given users.

  transfer.py one USER PATH LINE       one write of LINE + newline as USER; prints OK or the
                                       errno's name (of the open, the write or the close)
  transfer.py random SEED N ACCOUNTS LEDGER STORE
                                       N seeded random transfers among ACCOUNTS (name:user,
                                       comma separated), each written by the payer's owner,
                                       some over the balance, some retried; checks each answer
                                       and at the end every balance against a model kept here
                                       from the balances llmfs-ledger gave at the start
"""
import errno, json, os, pwd, random, subprocess, sys


def write_as(user, path, data):
    pw = pwd.getpwnam(user) if not user.isdigit() else pwd.getpwuid(int(user))
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.setgroups([])
            os.setgid(pw.pw_gid)
            os.setuid(pw.pw_uid)
            fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
        except OSError as e:
            code = e.errno
        os._exit(code)
    _, st = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(st)
    return 'OK' if code == 0 else errno.errorcode.get(code, str(code))


def balance(ledger, store, acc):
    out = subprocess.run([ledger, 'balance', store, acc], check=True, capture_output=True,
                         text=True).stdout
    return json.loads(out)['balance']


def main():
    if sys.argv[1] == 'one':
        user, path, line = sys.argv[2:5]
        print(write_as(user, path, line.encode('utf-8', 'surrogateescape') + b'\n'))
        return 0
    seed, n, accs, ledger, store = sys.argv[2:7]
    rng = random.Random(int(seed))
    owners = dict(a.split(':') for a in accs.split(','))
    names = sorted(owners)
    model = {a: balance(ledger, store, a) for a in names}
    done, moved, poor, retried = [], 0, 0, 0
    mnt = os.environ['MNT']
    for i in range(int(n)):
        if done and rng.random() < 0.2:
            frm, line = rng.choice(done)
            got = write_as(owners[frm], f'{mnt}/mining/accounts/{frm}/transfer', line)
            assert got == 'OK', ('retry', line, got)
            retried += 1
            continue
        frm, to = rng.sample(names, 2)
        amount = rng.randint(1, max(1, model[frm] * 3 // 2))
        line = f'to={to} amount={amount} key=r{seed}-{i}\n'.encode()
        got = write_as(owners[frm], f'{mnt}/mining/accounts/{frm}/transfer', line)
        if amount > model[frm]:
            assert got == 'EDQUOT', (line, model[frm], got)
            poor += 1
            continue
        assert got == 'OK', (line, got)
        model[frm] -= amount
        model[to] += amount
        done.append((frm, line))
        moved += 1
    for a in names:
        assert balance(ledger, store, a) == model[a], (a, balance(ledger, store, a), model[a])
    print(f'# {moved} transfers, {poor} refused for want of money, {retried} retries;'
          f' balances {model}')
    return 0


sys.exit(main())
