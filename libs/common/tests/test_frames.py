from __future__ import annotations

import pandas as pd

from featurebus.common.frames import FRAME_COLUMNS, from_parquet, to_parquet


def test_frame_round_trip_keeps_columns_rows_and_vectors() -> None:
    frame = pd.DataFrame(
        {
            **{c: ["a", "b"] for c, t in FRAME_COLUMNS.items() if t == "str"},
            "size_bytes": [0, 10],
            "vec": [[0.1, 0.2], [0.3, 0.4]],
        }
    )
    back = from_parquet(to_parquet(frame))
    assert list(back.columns) == list(frame.columns)
    assert back["data"].tolist() == ["a", "b"]
    assert [list(v) for v in back["vec"]] == [[0.1, 0.2], [0.3, 0.4]]
