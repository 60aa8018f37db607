"""A bucket laid out as ``s3://sentinel-s2-l1c`` (Requester Pays), tiny files, real names.

``tiles/<zone>/<band>/<square>/<y>/<m>/<d>/<seq>/`` (month and day without leading
zeros) with the bands, ``tileInfo.json`` naming its product, and the product's
metadata under ``products/<y>/<m>/<d>/<name>/``. Decoys a correct listing never
reads: another tile of the same zone, another month, a day after the range.
"""

from __future__ import annotations

import json
from datetime import date

BUCKET = "sentinel-s2-l1c"
BANDS = ("B02.jp2", "B03.jp2", "B04.jp2", "B08.jp2", "TCI.jp2")

#: (tile, day, seq) of every scene written; the first four are in January 2019.
SCENES = [("36NXF", date(2019, 1, 5), 0), ("36NXF", date(2019, 1, 15), 0),
          ("36NXF", date(2019, 1, 15), 1), ("10SDG", date(2019, 1, 10), 0)]
DECOYS = [("36NXG", date(2019, 1, 5), 0), ("36NXF", date(2019, 2, 4), 0),
          ("10SDG", date(2019, 10, 1), 0), ("36NXF", date(2019, 11, 5), 0)]


def product_name(tile: str, day: date, seq: int) -> str:
    stamp = day.strftime("%Y%m%d")
    return f"S2A_MSIL1C_{stamp}T0753{seq}1_N0207_R135_T{tile}_{stamp}T094025"


def tile_prefix(tile: str, day: date, seq: int) -> str:
    zone, band, square = int(tile[:2]), tile[2], tile[3:]
    return f"tiles/{zone}/{band}/{square}/{day.year}/{day.month}/{day.day}/{seq}/"


def product_prefix(tile: str, day: date, seq: int) -> str:
    return f"products/{day.year}/{day.month}/{day.day}/{product_name(tile, day, seq)}/"


def scene_objects(tile: str, day: date, seq: int) -> dict[str, bytes]:
    t, p = tile_prefix(tile, day, seq), product_prefix(tile, day, seq)
    name = product_name(tile, day, seq)
    out = {f"{t}{band}": f"{tile} {day} {seq} {band}\n".encode() for band in BANDS}
    out[f"{t}metadata.xml"] = b"<Level-1C_Tile_ID/>\n"
    out[f"{t}qi/MSK_CLOUDS_B00.gml"] = b"<gml/>\n"
    out[f"{t}tileInfo.json"] = json.dumps({
        "path": t.rstrip("/"), "productName": name, "productPath": p.rstrip("/"),
        "utmZone": int(tile[:2]), "latitudeBand": tile[2], "gridSquare": tile[3:],
    }).encode()
    out[f"{p}metadata.xml"] = b"<Level-1C_User_Product/>\n"
    out[f"{p}productInfo.json"] = json.dumps({
        "name": name, "tiles": [{"path": t.rstrip("/")}]}).encode()
    out[f"{p}datastrip/0/metadata.xml"] = b"<Level-1C_DataStrip_ID/>\n"
    return out


def write_bucket(s3_client) -> dict[str, bytes]:  # type: ignore[no-untyped-def]
    """Create the bucket with every scene and decoy; return what was written."""
    s3_client.create_bucket(Bucket=BUCKET)
    objects: dict[str, bytes] = {}
    for scene in SCENES + DECOYS:
        objects.update(scene_objects(*scene))
    for key, body in objects.items():
        s3_client.put_object(Bucket=BUCKET, Key=key, Body=body)
    return objects
