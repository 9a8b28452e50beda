"""Session builder: settings derived from spark-defaults.conf and the environment; a real Delta session."""
from chispa import assert_df_equality

from cqube_spark.session import JIT_OPTIONS, driver_java_options, resolve_jars, s3a_conf, session_conf


def test_s3a_from_environment_with_static_credentials():
    conf = s3a_conf({"CQUBE_S3_ENDPOINT": "http://127.0.0.1:8333", "AWS_ACCESS_KEY_ID": "k",
                     "AWS_SECRET_ACCESS_KEY": "s"})
    assert conf["spark.hadoop.fs.s3a.endpoint"] == "http://127.0.0.1:8333"
    assert conf["spark.hadoop.fs.s3a.connection.ssl.enabled"] == "false"
    assert conf["spark.hadoop.fs.s3a.path.style.access"] == "true"
    assert conf["spark.hadoop.fs.s3a.aws.credentials.provider"].endswith("SimpleAWSCredentialsProvider")


def test_s3a_without_credentials_uses_the_default_chain():
    conf = s3a_conf({})
    assert "spark.hadoop.fs.s3a.aws.credentials.provider" not in conf
    assert "spark.hadoop.fs.s3a.access.key" not in conf


def test_local_defaults_timezone_ui_and_jars():
    conf = session_conf("app", env={})
    assert conf["spark.master"] == "local[*]"
    assert conf["spark.sql.session.timeZone"] == "Asia/Kolkata"
    assert conf["spark.ui.enabled"] == "false"
    assert conf["spark.sql.extensions"] == "io.delta.sql.DeltaSparkSessionExtension"
    jars = conf["spark.jars"].split(",")
    assert any("delta-spark_2.13" in j for j in jars) and any("hadoop-aws" in j for j in jars)
    assert all(j.startswith("/") for j in jars)


def test_timezone_and_master_from_environment():
    conf = session_conf("app", env={"CQUBE_TIMEZONE": "UTC", "CQUBE_SPARK_MASTER": "local[2]"})
    assert (conf["spark.sql.session.timeZone"], conf["spark.master"]) == ("UTC", "local[2]")


def test_under_spark_submit_the_submitted_master_and_jars_win():
    conf = session_conf("app", env={"PYSPARK_GATEWAY_PORT": "1234"})
    assert "spark.master" not in conf and "spark.jars" not in conf


def test_driver_maps_the_class_archive_only_when_it_exists(tmp_path):
    archive = tmp_path / "cqube-spark.jsa"
    assert "SharedArchiveFile" not in driver_java_options({}, archive)
    archive.write_bytes(b"jsa")
    opts = driver_java_options({}, archive).split()
    assert f"-XX:SharedArchiveFile={archive}" in opts and "-Xshare:auto" in opts   # never -Xshare:on
    assert any(o.startswith("-Dlog4j2.configurationFile=") for o in opts)
    assert "SharedArchiveFile" not in driver_java_options({"CQUBE_JVM_ARCHIVE": "0"}, archive)
    dump = driver_java_options({"CQUBE_JVM_ARCHIVE_DUMP": "/x/new.jsa"}, archive).split()
    assert "-XX:ArchiveClassesAtExit=/x/new.jsa" in dump and not any("SharedArchiveFile" in o for o in dump)


def test_driver_gets_the_compiler_and_collector_options_unless_turned_off(tmp_path):
    opts = driver_java_options({}, tmp_path / "none.jsa").split()
    assert "-XX:+UseParallelGC" in opts and "-XX:InlineSmallCode=1000" in opts
    assert not set(JIT_OPTIONS) & set(driver_java_options({"CQUBE_JVM_TUNING": "0"}, tmp_path / "none.jsa").split())


def test_submitted_jobs_leave_driver_options_to_spark_submit():
    assert "spark.driver.extraJavaOptions" not in session_conf("app", env={"PYSPARK_GATEWAY_PORT": "1234"})


def test_submit_command_passes_the_driver_options(tmp_path, monkeypatch):
    import argparse

    from cqube_spark import cli, session

    archive = tmp_path / "cqube-spark.jsa"
    archive.write_bytes(b"jsa")
    monkeypatch.setattr(session, "CLASS_ARCHIVE", archive)
    monkeypatch.delenv("CQUBE_JVM_ARCHIVE", raising=False)
    args = argparse.Namespace(master=None, as_of=None, param=[], run_id=None)
    cmd = cli.submit_command(session.PROJECT_ROOT / "configs" / "jobs" / "intake.json", args, str(tmp_path))
    opts = cmd[cmd.index("--driver-java-options") + 1].split()
    assert f"-XX:SharedArchiveFile={archive}" in opts and "-Xshare:auto" in opts
    assert any(o.startswith("-Dlog4j2.configurationFile=") for o in opts)
    assert set(JIT_OPTIONS) <= set(opts)


def test_resolve_jars_expands_globs_relative_to_root(tmp_path):
    (tmp_path / "j").mkdir()
    for n in ("b.jar", "a.jar"):
        (tmp_path / "j" / n).write_text("")
    assert resolve_jars("j/*.jar", tmp_path) == f"{tmp_path}/j/a.jar,{tmp_path}/j/b.jar"


def test_real_session_has_delta_and_timezone(spark, tmp_path):
    assert spark.conf.get("spark.sql.session.timeZone") == "Asia/Kolkata"
    df = spark.createDataFrame([(1, "a"), (2, "b")], "id int, v string")
    df.write.format("delta").save(str(tmp_path / "t"))
    spark.createDataFrame([(2, "B"), (3, "c")], "id int, v string").createOrReplaceTempView("upd")
    spark.sql(f"MERGE INTO delta.`{tmp_path / 't'}` t USING upd s ON t.id = s.id "
              "WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *")
    got = spark.read.format("delta").load(str(tmp_path / "t"))
    expected = spark.createDataFrame([(1, "a"), (2, "B"), (3, "c")], "id int, v string")
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)
    assert spark.sql(f"DESCRIBE HISTORY delta.`{tmp_path / 't'}`").count() == 2
