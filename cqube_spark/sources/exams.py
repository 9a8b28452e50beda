"""PAT/SAT: the exam date derivable from the exam code, e.g. ``PAT030129072020`` → 2020-07-29
(``ddMMyyyy`` at a fixed offset, declared in the spec's ``period``)."""
from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F


def exam_date_from_code(df: DataFrame, code_column: str, offset: int = 7, fmt: str = "ddMMyyyy",
                        out: str = "exam_date") -> DataFrame:
    text = F.substring(F.col(code_column), offset + 1, len(fmt.replace("'", "")))
    return df.withColumn(out, F.to_date(F.try_to_timestamp(text, F.lit(fmt))))
