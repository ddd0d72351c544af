"""Every contract the service owns: Avro schemas, table metadata, migrations."""
from pathlib import Path

AVRO_DIR = Path(__file__).parent / "avro"
