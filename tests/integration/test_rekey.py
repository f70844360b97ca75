"""Key rotation of every set in every tier (dr_crypt state=rekeyed), on real files, processes and signals.

The sets are made here (no server needed): encrypted artifacts with sidecars and manifests, set manifests signed
with the old key, hard-linked into weekly/ and monthly/ as backups do, some tiers holding the only copy. After a
rekey the old key is "destroyed" (never used again): every kept set of every tier must pass backup_locate's
checks (locate.Locator.check_local: MAC, key ids, sidecars) under the new key and decrypt to its original bytes.
A rekey SIGKILLed at random points (a bounded loop) and run again must end in the same state.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from ansible.module_utils.common import warnings as ansible_warnings
from ansible.module_utils.testing import patch_module_args

from ansible_collections.atlasia.dr.plugins.module_utils import backupset, checksum, crypto, locate, naming
from ansible_collections.atlasia.dr.plugins.modules import dr_crypt

pytestmark = pytest.mark.integration

KEY = "old key 2026-10"
NEW_KEY = "new key 2026-12"
ENVIRONMENT = "test"
CHUNK = 64 * 1024
# set id -> tiers that still hold it (daily expired for some: weekly/monthly hold the only copy)
SETS = {
    "20261001_020000": ["monthly"],
    "20261101_020000": ["daily", "weekly", "monthly"],
    "20261108_020000": ["weekly"],
    "20261122_020000": ["daily", "weekly"],
    "20261124_020000": ["daily"],
}


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch):
    monkeypatch.setattr(ansible_warnings, "_global_warnings", {})


def encrypted_artifact(directory, prefix, ts, ext, plaintext, key):
    """What dr_crypt state=encrypted leaves: ``<name>.enc`` with sidecars, and the artifact manifest."""
    name = "%s_%s.%s%s" % (prefix, ts, ext, crypto.EXTENSION)

    class Source(object):
        def __init__(self, data):
            self.data, self.pos = data, 0

        def read(self, size):
            block = self.data[self.pos:self.pos + size]
            self.pos += len(block)
            return block

    digests, size, dummy = checksum.write_with_sidecars(
        str(directory / name), lambda sink: crypto.encrypt_stream(Source(plaintext), sink, key, CHUNK))
    manifest = dict(type=prefix, artifact=name, size=size, sha256=digests["sha256"], md5=digests["md5"],
                    database="app", encryption=dict(algorithm=crypto.ALGORITHM, key_id=crypto.key_id(key).hex(),
                                                    chunk_size=CHUNK, plaintext=dict(
                                                        name=name[:-len(crypto.EXTENSION)], size=len(plaintext),
                                                        sha256=hashlib.sha256(plaintext).hexdigest())))
    (directory / naming.manifest_name("%s_%s" % (prefix, ts))).write_text(json.dumps(manifest))
    return name


def make_root(root, size=200 * 1024):
    """The tiers of SETS under ``root``; returns ``{artifact name: plaintext}``."""
    plaintexts = {}
    daily = root / "daily"
    for tier in backupset.TIERS:
        (root / tier).mkdir(parents=True, exist_ok=True)
    for ts, tiers in SETS.items():
        artifacts = []
        for prefix, ext, component in (("backup", "sql.gz", "database"), ("vault", "snap", "vault")):
            plain = random.Random(ts + prefix).randbytes(size)
            name = encrypted_artifact(daily, prefix, ts, ext, plain, KEY)
            plaintexts[name] = plain
            artifacts.append(dict(name=name, component=component))
        path, data = backupset.build(str(daily), ts, artifacts, environment=ENVIRONMENT, auth_key=KEY,
                                     extra=dict(database="app"))
        for tier in tiers:
            if tier != "daily":
                backupset.link_into(str(daily), data, str(root / tier))
        if "daily" not in tiers:
            for name in backupset.all_files(data):
                os.unlink(str(daily / name))
    return plaintexts


def every_copy(root):
    """``(tier, manifest path)`` of every set copy under ``root``."""
    return [(tier, str(root / tier / name)) for tier in backupset.TIERS for name in sorted(os.listdir(str(root / tier)))
            if backupset.is_set_manifest(naming.parse_backup_name(name))]


def assert_all_sets_restore_under_new_key_only(root, plaintexts, tmp_path):
    copies = every_copy(root)
    assert sorted((tier, os.path.basename(path)[4:19]) for tier, path in copies) == sorted(
        (tier, ts) for ts, tiers in SETS.items() for tier in tiers)
    locator = locate.Locator(locate.Policy(key=NEW_KEY, encryption_required=True, environment=ENVIRONMENT,
                                           database="app"))
    old_locator = locate.Locator(locate.Policy(key=KEY, encryption_required=True, environment=ENVIRONMENT))
    for tier, manifest in copies:
        assert locator.check_local(manifest) == [], (tier, manifest)
        assert old_locator.check_local(manifest), "the old key must no longer open %s" % manifest
        data = backupset.load(manifest)
        for entry in data["artifacts"]:
            path = os.path.join(os.path.dirname(manifest), entry["name"])
            out = tmp_path / "restored" / tier / entry["name"][:-len(crypto.EXTENSION)]
            out.parent.mkdir(parents=True, exist_ok=True)
            own = json.loads(open(os.path.join(os.path.dirname(manifest), entry["manifest"])).read())
            assert own["encryption"]["key_id"] == crypto.key_id(NEW_KEY).hex()
            crypto.decrypt_file(path, str(out), NEW_KEY, own["encryption"]["plaintext"]["sha256"])
            assert out.read_bytes() == plaintexts[entry["name"]]
            # hard-linked copies stay hard-linked: one inode per file, whatever the number of tiers
            for other in backupset.TIERS:
                twin = root / other / entry["name"]
                if twin.exists():
                    for name in entry["files"]:
                        assert os.path.samefile(str(root / other / name), os.path.join(os.path.dirname(manifest), name))
    leftovers = [name for tier in backupset.TIERS for name in os.listdir(str(root / tier)) if name.startswith(".")]
    assert leftovers == []


def run_rekey(root, capsys, check_mode=False, key=KEY):
    args = dict(state="rekeyed", root=str(root), key=key, new_key=NEW_KEY)
    if check_mode:
        args["_ansible_check_mode"] = True
    with patch_module_args(args):
        with pytest.raises(SystemExit):
            dr_crypt.main()
    return json.loads(capsys.readouterr().out)


def test_rekey_reencrypts_every_copy_of_every_set_in_every_tier(tmp_path, capsys):
    root = tmp_path / "backups"
    plaintexts = make_root(root)
    inodes = dict((name, os.stat(str(root / "daily" / name)).st_ino) for name in os.listdir(str(root / "daily")))
    preview = run_rekey(root, capsys, check_mode=True)
    assert preview["changed"] and sorted(preview["rekeyed"]) == sorted(SETS), preview
    assert inodes == dict((name, os.stat(str(root / "daily" / name)).st_ino) for name in os.listdir(str(root / "daily")))

    result = run_rekey(root, capsys)
    assert result["changed"] and not result.get("failed"), result
    assert sorted(result["rekeyed"]) == sorted(SETS) and result["failed_sets"] == []
    assert_all_sets_restore_under_new_key_only(root, plaintexts, tmp_path)

    again = run_rekey(root, capsys)
    assert not again["changed"] and sorted(again["unchanged"]) == sorted(SETS), again


def test_rekey_refuses_a_set_whose_manifest_was_altered(tmp_path, capsys):
    root = tmp_path / "backups"
    make_root(root)
    altered = root / "daily" / backupset.set_manifest_name("20261124_020000")
    data = json.loads(altered.read_text())
    data["artifacts"][0]["size"] += 1
    altered.write_text(json.dumps(data))
    result = run_rekey(root, capsys)
    assert result["failed"] and result["failed_sets"] == ["20261124_020000"], result
    assert "does not match its authentication code" in result["msg"]
    # the other sets were re-keyed, the altered one was not touched (its files are still under the old key)
    assert sorted(result["rekeyed"]) == sorted(set(SETS) - {"20261124_020000"})
    for entry in data["artifacts"]:
        crypto.check_key(str(root / "daily" / entry["name"]), KEY)


def test_rotated_state_resumes_a_file_already_under_the_new_key(tmp_path, capsys):
    """state=rotated on a file whose rename happened but whose sidecars were not rewritten finishes it."""
    root = tmp_path / "backups"
    make_root(root)
    daily = root / "daily"
    name = "backup_20261124_020000.sql.gz.enc"
    # renamed over the old file, then killed: stale sidecars, new file
    digests, size = dr_crypt._reencrypt(str(daily / name), KEY, NEW_KEY, CHUNK, None)
    with pytest.raises(checksum.ChecksumError):
        checksum.verify_sidecars(str(daily / name))
    with patch_module_args(dict(state="rotated", src=str(daily / name), key=KEY, new_key=NEW_KEY)):
        with pytest.raises(SystemExit):
            dr_crypt.main()
    result = json.loads(capsys.readouterr().out)
    assert result["changed"] and not result.get("failed"), result
    checksum.verify_sidecars(str(daily / name), required=True)
    assert result["sha256"] == digests["sha256"]


KILLABLE = textwrap.dedent("""
    import sys
    from ansible_collections.atlasia.dr.plugins.modules import dr_crypt
    sets, repairs, failed = dr_crypt.rekey_root(sys.argv[1], sys.argv[2], sys.argv[3], 64 * 1024)
    sys.exit(1 if failed else 0)
""")


def test_rekey_killed_at_random_points_then_rerun_completes(tmp_path):
    root = tmp_path / "backups"
    plaintexts = make_root(root, size=1024 * 1024)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    argv = [sys.executable, "-c", KILLABLE, str(root), KEY, NEW_KEY]
    rng = random.Random(int(os.environ.get("REKEY_KILL_SEED", "20261202")))
    started = time.monotonic()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300, check=False)
    full = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    # start again from the old key: the timed run above tells how long a whole rekey takes
    for tier in backupset.TIERS:
        for name in os.listdir(str(root / tier)):
            os.unlink(str(root / tier / name))
    plaintexts = make_root(root, size=1024 * 1024)
    kills = 0
    for attempt in range(5):  # bounded: at most 5 kills, each within one full run's time
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(rng.uniform(0.05, full))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.communicate(timeout=60)
        # whatever the moment of the kill, a final-named artifact either verifies against its sidecars or is a
        # complete file under the new key whose sidecars are stale ("resume needed"), never anything else
        for tier in backupset.TIERS:
            for name in os.listdir(str(root / tier)):
                path = str(root / tier / name)
                if not name.endswith(crypto.EXTENSION):
                    continue
                try:
                    checksum.verify_sidecars(path, required=True)
                except checksum.ChecksumError:
                    crypto.check_key(path, NEW_KEY)
                    with open(path, "rb") as handle:
                        crypto.decrypt_stream(handle, lambda block: None, NEW_KEY)
    assert kills >= 1, "no run was interrupted: the test proves nothing"
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    assert_all_sets_restore_under_new_key_only(root, plaintexts, tmp_path)


def test_rekey_leaves_an_unsigned_set_unsigned_and_says_so(tmp_path, capsys):
    """Re-keying must not make a set authentic that never was: it is re-encrypted, not signed."""
    root = tmp_path / "backups"
    make_root(root, size=4096)
    manifest = root / "daily" / backupset.set_manifest_name("20261124_020000")
    data = json.loads(manifest.read_text())
    del data["auth"]
    manifest.write_text(json.dumps(data))
    result = run_rekey(root, capsys)
    assert not result.get("failed") and "20261124_020000" in result["rekeyed"], result
    assert "carried no MAC" in json.dumps(result["warnings"])
    assert "auth" not in backupset.load(str(manifest))
    for entry in data["artifacts"]:
        crypto.check_key(str(root / "daily" / entry["name"]), NEW_KEY)


def test_rekey_refuses_a_file_under_a_third_key(tmp_path, capsys):
    root = tmp_path / "backups"
    make_root(root, size=4096)
    daily = root / "daily"
    name = "vault_20261124_020000.snap.enc"
    digests, size = dr_crypt._reencrypt(str(daily / name), KEY, "a third key", CHUNK, None)
    result = run_rekey(root, capsys)
    assert result["failed"] and result["failed_sets"] == ["20261124_020000"], result
    assert "third key" in result["msg"]


# --- the copies in S3 (s3=true) ---------------------------------------------------------------------------------
S3_ONLY = "20260930_020000"  # a set S3 keeps longer than the host: no local copy at all


@pytest.fixture(scope="module")
def s3_server():
    from tests.support.seaweedfs import SeaweedS3Server

    server = SeaweedS3Server()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def upload_set(server, bucket, directory, set_id, capsys):
    """What the backup's upload does: the artifacts (sidecars and manifests with them), then the set manifest."""
    from ansible_collections.atlasia.dr.plugins.modules import s3_backup_transfer

    data = backupset.load(os.path.join(str(directory), backupset.set_manifest_name(set_id)))
    for args in (dict(srcs=[os.path.join(str(directory), e["name"]) for e in data["artifacts"]]),
                 dict(src=os.path.join(str(directory), backupset.set_manifest_name(set_id)))):
        params = dict(server.module_args(bucket), mode="upload", prefix="sets/", validate_certs=False, **args)
        with patch_module_args(params):
            with pytest.raises(SystemExit):
                s3_backup_transfer.main()
        result = json.loads(capsys.readouterr().out)
        assert not result.get("failed"), result


def s3_only_set(directory, size):
    """The set S3_ONLY (a database dump and a Vault snapshot, encrypted and signed with KEY) in ``directory``;
    ``(artifacts, {name: plaintext})``."""
    directory.mkdir(parents=True, exist_ok=True)
    artifacts, plaintexts = [], {}
    for prefix, ext, component in (("backup", "sql.gz", "database"), ("vault", "snap", "vault")):
        plain = random.Random(S3_ONLY + prefix).randbytes(size)
        name = encrypted_artifact(directory, prefix, S3_ONLY, ext, plain, KEY)
        plaintexts[name] = plain
        artifacts.append(dict(name=name, component=component))
    backupset.build(str(directory), S3_ONLY, artifacts, environment=ENVIRONMENT, auth_key=KEY,
                    extra=dict(database="app"))
    return artifacts, plaintexts


def assert_locates_from_s3_under_new_key(server, bucket, key, staging, plaintexts, capsys):
    """backup_locate takes the set ``key`` from S3 strictly under NEW_KEY alone, each artifact decrypting to its
    original bytes."""
    from ansible_collections.atlasia.dr.plugins.modules import backup_locate

    params = dict(server.module_args(bucket), backup="s3://%s/%s" % (bucket, key), validate_certs=False,
                  staging_dir=str(staging), environment=ENVIRONMENT, database="app", encryption_key=NEW_KEY,
                  encryption_required=True, s3=True, prefix="sets/")
    with patch_module_args(params):
        with pytest.raises(SystemExit):
            backup_locate.main()
    located = json.loads(capsys.readouterr().out)
    assert not located.get("failed") and located["source"] == "s3", located
    for artifact in located["artifacts"]:
        with open(artifact["path"], "rb") as handle:
            assert handle.read() == plaintexts[artifact["name"]], (key, artifact["name"])


def s3_manifests(server, bucket):
    client = server.client()
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix="sets/").get("Contents", [])]
    return dict((k, json.loads(client.get_object(Bucket=bucket, Key=k)["Body"].read())) for k in keys
                if k.rsplit("/", 1)[-1].startswith("set_"))


def test_rekey_with_s3_brings_every_set_in_the_bucket_under_the_new_key(tmp_path, capsys, s3_server):
    """Every set in S3, not only those whose local manifest records the upload: the weekly and monthly copies
    (linked before the upload, so they say offsite.s3 false) and a set the host no longer keeps at all. Before
    this, rekey.yml uploaded only the sets whose first local copy said offsite.s3 true, and the others stayed
    under the old key in the bucket: unrecoverable once the old key was destroyed."""
    bucket = "rekey-%d" % random.randrange(10 ** 9)
    s3_server.client().create_bucket(Bucket=bucket)
    root = tmp_path / "backups"
    plaintexts = make_root(root, size=4096)
    for set_id, tiers in SETS.items():
        upload_set(s3_server, bucket, root / tiers[0], set_id, capsys)
    elsewhere = tmp_path / "elsewhere"
    plaintexts.update(s3_only_set(elsewhere / "daily", 4096)[1])
    upload_set(s3_server, bucket, elsewhere / "daily", S3_ONLY, capsys)

    args = dict(state="rekeyed", root=str(root), key=KEY, new_key=NEW_KEY, s3=True, prefix="sets/",
                staging_dir=str(tmp_path / "staging"), validate_certs=False, **s3_server.module_args(bucket))
    with patch_module_args(args):
        with pytest.raises(SystemExit):
            dr_crypt.main()
    result = json.loads(capsys.readouterr().out)
    assert not result.get("failed"), result
    actions = dict((r["set_id"], (r["action"], r["source"])) for r in result["s3_sets"])
    assert actions == dict([(set_id, ("rekeyed", "local")) for set_id in SETS] + [(S3_ONLY, ("rekeyed", "s3"))])
    assert not os.listdir(str(tmp_path / "staging")), "the staging folder of each set is removed once uploaded"
    assert_all_sets_restore_under_new_key_only(root, plaintexts, tmp_path)

    # the old key is destroyed: every set in the bucket is authentic, complete and decrypts under the new key alone
    from ansible_collections.atlasia.dr.plugins.module_utils import setauth

    manifests = s3_manifests(s3_server, bucket)
    assert sorted(m["set_id"] for m in manifests.values()) == sorted(list(SETS) + [S3_ONLY])
    for key, data in sorted(manifests.items()):
        setauth.check(data, NEW_KEY)
        assert_locates_from_s3_under_new_key(s3_server, bucket, key, tmp_path / "restore" / data["set_id"],
                                             plaintexts, capsys)

    # run again: every set in the bucket is complete under the new key, nothing is sent
    with patch_module_args(args):
        with pytest.raises(SystemExit):
            dr_crypt.main()
    again = json.loads(capsys.readouterr().out)
    assert not again["changed"] and set(r["action"] for r in again["s3_sets"]) == {"unchanged"}, again


def _put_ciphertext(client, bucket, key, ciphertext):
    """Replace one object as the engine's upload does (checksum metadata with it), leaving its sidecars alone."""
    client.put_object(Bucket=bucket, Key=key, Body=ciphertext, Metadata=dict(
        sha256=hashlib.sha256(ciphertext).hexdigest(), md5=hashlib.md5(ciphertext).hexdigest()))


def _encrypt(plaintext, key):
    out = []
    crypto.encrypt_stream(io.BytesIO(plaintext), out.append, key, CHUNK)
    return b"".join(out)


@pytest.mark.parametrize("case", ["killed between the upload and its sidecars", "damaged under the old key",
                                  "other content under the new key"])
def test_rekey_with_s3_finishes_an_object_left_beside_its_old_sidecars_and_refuses_anything_else(
        tmp_path, capsys, s3_server, case):
    """A rekey killed after uploading an artifact's new ciphertext and before its sidecars leaves the object under
    the new key beside sidecars of the old one (seen in the fault suite's simulated year: the next run refused the
    set as corrupt, and the operator could not finish the rotation). The next run must recognise it (the new key
    opens it, every chunk authenticates, the plaintext matches the checksum recorded at backup time) and finish
    the set; an object that does not pass those checks stays refused and the bucket is not touched."""
    bucket = "rekey-kill-%d" % random.randrange(10 ** 9)
    client = s3_server.client()
    client.create_bucket(Bucket=bucket)
    daily = tmp_path / "elsewhere" / "daily"
    artifacts, plaintexts = s3_only_set(daily, 3 * CHUNK + 17)
    upload_set(s3_server, bucket, daily, S3_ONLY, capsys)
    target = "sets/" + artifacts[0]["name"]
    if case == "killed between the upload and its sidecars":
        _put_ciphertext(client, bucket, target, _encrypt(plaintexts[artifacts[0]["name"]], NEW_KEY))
    elif case == "damaged under the old key":
        body = bytearray(client.get_object(Bucket=bucket, Key=target)["Body"].read())
        body[-100] ^= 0x01
        _put_ciphertext(client, bucket, target, bytes(body))
    else:
        _put_ciphertext(client, bucket, target, _encrypt(b"planted " + plaintexts[artifacts[0]["name"]], NEW_KEY))
    before = dict((o["Key"], o["ETag"]) for o in client.list_objects_v2(Bucket=bucket)["Contents"])

    root = tmp_path / "backups"
    for tier in backupset.TIERS:
        (root / tier).mkdir(parents=True)
    args = dict(state="rekeyed", root=str(root), key=KEY, new_key=NEW_KEY, s3=True, prefix="sets/",
                staging_dir=str(tmp_path / "staging"), validate_certs=False, **s3_server.module_args(bucket))
    with patch_module_args(args):
        with pytest.raises(SystemExit):
            dr_crypt.main()
    result = json.loads(capsys.readouterr().out)
    if case != "killed between the upload and its sidecars":
        assert result.get("failed") and result["error_kind"] == "rekey", result
        assert "is corrupt" in result["msg"] and artifacts[0]["name"] in result["msg"], result["msg"]
        if case == "other content under the new key":
            assert "differs from the checksum recorded at backup time" in result["msg"], result["msg"]
        after = dict((o["Key"], o["ETag"]) for o in client.list_objects_v2(Bucket=bucket)["Contents"])
        assert after == before, "a refused set is not touched in the bucket"
        staged = tmp_path / "staging" / S3_ONLY
        assert not (staged / artifacts[0]["name"]).exists(), "a refused download leaves no file behind"
        return
    assert not result.get("failed"), result
    assert [(r["set_id"], r["action"], r["source"]) for r in result["s3_sets"]] == [(S3_ONLY, "rekeyed", "s3")]

    from ansible_collections.atlasia.dr.plugins.module_utils import setauth

    manifests = s3_manifests(s3_server, bucket)
    assert len(manifests) == 1
    key, data = next(iter(manifests.items()))
    setauth.check(data, NEW_KEY)
    for entry in artifacts:  # the sidecars in the bucket describe the objects again
        body = client.get_object(Bucket=bucket, Key="sets/" + entry["name"])["Body"].read()
        md5 = client.get_object(Bucket=bucket, Key="sets/" + entry["name"] + ".md5")["Body"].read().decode()
        assert md5.split()[0] == hashlib.md5(body).hexdigest(), entry["name"]
    assert_locates_from_s3_under_new_key(s3_server, bucket, key, tmp_path / "restore", plaintexts, capsys)
