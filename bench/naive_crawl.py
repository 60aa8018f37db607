"""The peer we replace, for the crawl benchmark: a naive, sequential S3 crawl.

Written from the description of neurodata/m2g's ``m2g_cloud`` (list the bucket,
find subjects and sessions with regexes, one call after another on a single
client); no code taken from it. Two shapes:

``per_prefix`` (the benchmark's "naive" row, one listing per key prefix):
    list the dataset root with a delimiter, then for every subject list its
    folder with a delimiter to find the sessions, then for every session list
    it with a delimiter to find the datatype folders, then list every datatype
    folder. For 1,000 subjects x 2 sessions x 3 datatypes that is about
    1 + 1,000 + 2,000 + 6,000 ListObjectsV2 calls, strictly one after another.

``m2g_shipped`` (what m2g's cloud script did at the end): list everything under
    ``<prefix>/sub-`` without a delimiter (every key of the dataset, 1,000 a
    page), pull subject labels out of the keys with a regex, then list each
    subject's folder again in full to pull out its session labels.

Both return ``{(subject, session): [key, ...]}`` so the benchmark can check that
they saw the same files as the other tools. Subject and session regexes are the
usual ``sub-<label>`` / ``ses-<label>`` ones (m2g's own accepted digits only for
sessions; the synthetic dataset's sessions are numeric, so it does not matter).
"""

from __future__ import annotations

import re
from typing import Any

_SUBJECT = re.compile(r"(?:^|/)sub-([0-9A-Za-z+]+)/$")
_SESSION = re.compile(r"(?:^|/)ses-([0-9A-Za-z+]+)/$")
_SUBJECT_IN_KEY = re.compile(r"/sub-([0-9A-Za-z+]+)/")
_SESSION_IN_KEY = re.compile(r"/ses-([0-9A-Za-z+]+)/")


Scans = dict[tuple[str, str | None], list[str]]


def _list(
    client: Any, bucket: str, prefix: str, delimiter: str | None
) -> tuple[list[str], list[str]]:
    """Every key and common prefix under ``prefix``, following continuation tokens by hand."""
    keys: list[str] = []
    prefixes: list[str] = []
    kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
    if delimiter:
        kwargs["Delimiter"] = delimiter
    while True:
        resp = client.list_objects_v2(**kwargs)
        keys.extend(o["Key"] for o in resp.get("Contents", ()))
        prefixes.extend(p["Prefix"] for p in resp.get("CommonPrefixes", ()))
        token = resp.get("NextContinuationToken")
        if not token:
            return keys, prefixes
        kwargs["ContinuationToken"] = token


def crawl_per_prefix(client: Any, bucket: str, prefix: str) -> Scans:
    """One listing per key prefix, sequentially (the benchmark's naive peer)."""
    root = prefix.strip("/") + "/" if prefix.strip("/") else ""
    scans: Scans = {}
    _keys, top = _list(client, bucket, root, "/")
    for sub_prefix in top:
        m = _SUBJECT.search(sub_prefix)
        if not m:
            continue
        subject = m.group(1)
        sub_keys, sub_dirs = _list(client, bucket, sub_prefix, "/")
        sessions = [(d, _SESSION.search(d)) for d in sub_dirs]
        session_dirs = [(d, s.group(1)) for d, s in sessions if s]
        if not session_dirs:
            # No sessions: the datatype folders sit right under the subject.
            files = list(sub_keys)
            for dtype in sub_dirs:
                files.extend(_list(client, bucket, dtype, None)[0])
            scans[(subject, None)] = files
            continue
        for ses_prefix, session in session_dirs:
            ses_keys, dtype_dirs = _list(client, bucket, ses_prefix, "/")
            files = list(sub_keys) + list(ses_keys)
            for dtype in dtype_dirs:
                files.extend(_list(client, bucket, dtype, None)[0])
            scans[(subject, session)] = files
    return scans


def crawl_m2g_shipped(client: Any, bucket: str, prefix: str) -> Scans:
    """Full listing of ``sub-*``, then one full listing per subject, sequentially."""
    root = prefix.strip("/") + "/" if prefix.strip("/") else ""
    every_key, _ = _list(client, bucket, root + "sub-", None)
    found = (_SUBJECT_IN_KEY.search("/" + k[len(root):]) for k in every_key)
    subjects = sorted({m.group(1) for m in found if m})
    scans: Scans = {}
    for subject in subjects:
        keys, _ = _list(client, bucket, f"{root}sub-{subject}/", None)
        by_session: dict[str | None, list[str]] = {}
        for key in keys:
            m = _SESSION_IN_KEY.search(key)
            by_session.setdefault(m.group(1) if m else None, []).append(key)
        shared = by_session.pop(None, [])
        if not by_session:
            scans[(subject, None)] = shared
        for session, files in by_session.items():
            scans[(subject, session)] = shared + files
    return scans
