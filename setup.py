"""cqube-spark: school-education analytics on Apache Spark and Delta Lake.

Direct dependencies are pinned here to the versions that resolve together (pyspark 4.1.1 is the newest
release delta-spark 4.3.1 accepts, and Great Expectations 1.x supports); `requirements.lock` freezes the
whole tree for reproducible installs (`scripts/setup.sh` installs from it).
"""
from setuptools import find_packages, setup

setup(
    name="cqube-spark",
    version="0.1.0",
    description="cQube education analytics on Apache Spark + Delta Lake: intake, validation, KPIs, exhausts",
    python_requires=">=3.11,<3.12",
    packages=find_packages(include=["cqube_spark", "cqube_spark.*"]),
    package_data={"cqube_spark": ["config/schemas/*.json"]},
    install_requires=[
        "pyspark==4.1.1",
        "delta-spark==4.3.1",
        "great-expectations[spark]==1.24.1",
        "pandas>=2.2,<3",
        "boto3>=1.40,<2",
        "pyyaml>=6,<7",
        "jsonschema>=4.20,<5",
        "cassandra-driver==3.30.1",
        "redis>=5,<9",
        "psycopg2-binary>=2.9,<3",
        "cryptography>=44",
        "pyzipper==0.4.0",
        # the API (cqube-spark serve); exact versions in requirements.lock
        "fastapi>=0.115,<1",
        "uvicorn>=0.30,<1",
        "PyJWT[crypto]>=2.8,<3",
        "prometheus-client>=0.20,<1",
        "deltalake>=1.0,<2",
        "requests>=2.31,<3",
    ],
    extras_require={"test": ["pytest>=8", "chispa==0.12.0", "aiosmtpd==1.4.6", "confluent-kafka==2.16.1"]},
    entry_points={"console_scripts": ["cqube-spark=cqube_spark.cli:main"]},
)
