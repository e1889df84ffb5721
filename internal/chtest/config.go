package chtest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// configXML is the server configuration: the <yandex> root element that 18.16 needs and
// current versions still accept; elements a version does not know are ignored by it. Only
// the native and HTTP ports listen, on loopback; every path lies under the test's directory.
const configXML = `<?xml version="1.0"?>
<yandex>
    <logger>
        <level>warning</level>
        <log>{{DIR}}/log/server.log</log>
        <errorlog>{{DIR}}/log/server.err.log</errorlog>
        <size>10M</size>
        <count>1</count>
        <console>0</console>
    </logger>
    <listen_host>127.0.0.1</listen_host>
    <tcp_port>{{TCP}}</tcp_port>
    <http_port>{{HTTP}}</http_port>
    <path>{{DIR}}/data/</path>
    <tmp_path>{{DIR}}/data/tmp/</tmp_path>
    <user_files_path>{{DIR}}/data/user_files/</user_files_path>
    <format_schema_path>{{DIR}}/data/format_schemas/</format_schema_path>
    <access_control_path>{{DIR}}/data/access/</access_control_path>
    <user_scripts_path>{{DIR}}/data/user_scripts/</user_scripts_path>
    <user_defined_path>{{DIR}}/data/user_defined/</user_defined_path>
    <users_config>users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <max_connections>256</max_connections>
    <max_concurrent_queries>64</max_concurrent_queries>
    <keep_alive_timeout>3</keep_alive_timeout>
    <shutdown_wait_unfinished>1</shutdown_wait_unfinished>
    <uncompressed_cache_size>67108864</uncompressed_cache_size>
    <mark_cache_size>67108864</mark_cache_size>
    <mlock_executable>false</mlock_executable>
    <builtin_dictionaries_reload_interval>3600</builtin_dictionaries_reload_interval>
{{EXTRA}}</yandex>
`

// usersXML is the password-less default user, reachable from loopback only, with no
// settings in its profile (a setting unknown to a version would stop that version).
const usersXML = `<?xml version="1.0"?>
<yandex>
    <profiles>
        <default></default>
    </profiles>
    <users>
        <default>
            <password></password>
            <networks>
                <ip>127.0.0.1</ip>
                <ip>::1</ip>
            </networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas>
        <default>
            <interval>
                <duration>3600</duration>
                <queries>0</queries>
                <errors>0</errors>
                <result_rows>0</result_rows>
                <read_rows>0</read_rows>
                <execution_time>0</execution_time>
            </interval>
        </default>
    </quotas>
</yandex>
`

// writeConfig writes config.xml and users.xml into dir and creates log/ and data/.
// extra is inserted before the closing </yandex> (a cluster node's replication settings).
func writeConfig(dir string, tcpPort, httpPort int, extra string) error {
	for _, sub := range []string{"log", "data"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return fmt.Errorf("create server directory: %w", err)
		}
	}
	cfg := strings.NewReplacer(
		"{{DIR}}", dir,
		"{{TCP}}", fmt.Sprint(tcpPort),
		"{{HTTP}}", fmt.Sprint(httpPort),
		"{{EXTRA}}", extra,
	).Replace(configXML)
	if err := os.WriteFile(filepath.Join(dir, "config.xml"), []byte(cfg), 0o644); err != nil {
		return fmt.Errorf("write server config: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "users.xml"), []byte(usersXML), 0o644); err != nil {
		return fmt.Errorf("write server users: %w", err)
	}
	return nil
}
