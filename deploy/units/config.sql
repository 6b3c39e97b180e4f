-- The configuration table of the on-prem unit (components/units/onprem/configstore.yaml),
-- with the trigger that tells daprd of changes. Safe to run again.
CREATE TABLE IF NOT EXISTS parley_config (
  key VARCHAR NOT NULL PRIMARY KEY,
  value VARCHAR NOT NULL,
  version VARCHAR NOT NULL,
  metadata JSON);
CREATE OR REPLACE FUNCTION parley_config_notify() RETURNS TRIGGER AS $$
DECLARE data json; notification json;
BEGIN
  IF (TG_OP = 'DELETE') THEN
    -- a removed setting is announced with an empty value
    data = json_build_object('key', OLD.key, 'value', '',
                             'version', OLD.version, 'metadata', OLD.metadata);
  ELSE data = row_to_json(NEW); END IF;
  notification = json_build_object('table', TG_TABLE_NAME, 'action', TG_OP, 'data', data);
  PERFORM pg_notify('parley_config', notification::text);
  RETURN NULL;
END; $$ LANGUAGE plpgsql;
CREATE OR REPLACE TRIGGER parley_config_changed
  AFTER INSERT OR UPDATE OR DELETE ON parley_config
  FOR EACH ROW EXECUTE PROCEDURE parley_config_notify();
