# Debian packages of libderp with CPack (scripts/package.sh runs it; docs/CLI.md, Installing):
#   libderp0     component lib      the shared library
#   libderp-dev  component dev      headers, libderp.so, CMake config, libderp.pc
#   derp-tools   components tools   the derp-* commands, man pages, completions,
#                and system         derp-serve.service and /etc/default/derp-serve
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME libderp)
set(CPACK_PACKAGE_VENDOR "libderp")
set(CPACK_PACKAGE_VERSION "${PROJECT_VERSION}")
set(CPACK_PACKAGE_CONTACT "libderp maintainers <maintainers@libderp.invalid>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "toolkit for Tailscale's DERP relay protocol")
set(CPACK_PACKAGING_INSTALL_PREFIX "/usr")
set(CPACK_STRIP_FILES ON)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_GROUPING ONE_PER_GROUP)
set(CPACK_COMPONENTS_ALL lib dev tools system)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_RELEASE 1)
# dpkg-shlibdeps must find libderp.so.0 of this build to say derp-tools needs libderp0.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS_PRIVATE_DIRS "${CMAKE_BINARY_DIR}")

set(CPACK_COMPONENT_LIB_GROUP libderp0)
set(CPACK_COMPONENT_DEV_GROUP libderp-dev)
set(CPACK_COMPONENT_TOOLS_GROUP derp-tools)
set(CPACK_COMPONENT_SYSTEM_GROUP derp-tools)
# The packages need each other at the exact version (CPack's component dependencies do not
# cross groups, and dpkg-shlibdeps cannot see libderp0's shlibs before it is installed); the
# system libraries come from dpkg-shlibdeps.
set(DERP_DEB_VERSION "${PROJECT_VERSION}-${CPACK_DEBIAN_PACKAGE_RELEASE}")
set(CPACK_DEBIAN_LIBDERP-DEV_PACKAGE_DEPENDS "libderp0 (= ${DERP_DEB_VERSION})")
set(CPACK_DEBIAN_DERP-TOOLS_PACKAGE_DEPENDS "libderp0 (= ${DERP_DEB_VERSION})")

set(CPACK_DEBIAN_LIBDERP0_PACKAGE_NAME libderp0)
set(CPACK_DEBIAN_LIBDERP0_PACKAGE_SECTION libs)
# Descriptions: the first line is the synopsis; CPack indents the others and turns an empty
# line into Debian's " ." paragraph break (lines stay under 80 columns for lintian).
set(CPACK_DEBIAN_LIBDERP0_DESCRIPTION "toolkit for Tailscale's DERP relay protocol - library
libderp speaks Tailscale's DERP relay protocol (Designated Encrypted Relay
for Packets): node keys, frames, the NaCl-box handshake, DERP over HTTP,
WebSocket and TLS, a client like Go's derphttp.Client, a relay like derper,
DERP maps, latency probing and captive-portal checks.

This package holds the shared library.")
# A shlibs file, so packages built against libderp depend on it, and the ldconfig trigger
# (packaging/debian/triggers) that Debian wants for a library in /usr/lib.
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS ON)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS_POLICY ">=")
set(CPACK_DEBIAN_LIBDERP0_PACKAGE_CONTROL_EXTRA "${CMAKE_SOURCE_DIR}/packaging/debian/triggers")

set(CPACK_DEBIAN_LIBDERP-DEV_PACKAGE_NAME libderp-dev)
set(CPACK_DEBIAN_LIBDERP-DEV_PACKAGE_SECTION libdevel)
set(CPACK_DEBIAN_LIBDERP-DEV_DESCRIPTION "toolkit for Tailscale's DERP relay protocol - development files
libderp speaks Tailscale's DERP relay protocol: a client like Go's
derphttp.Client, a relay like derper, probes and codecs, as a C++20 library.

This package holds the headers, the CMake package config
(find_package(libderp)) and the pkg-config file.")

set(CPACK_DEBIAN_DERP-TOOLS_PACKAGE_NAME derp-tools)
set(CPACK_DEBIAN_DERP-TOOLS_PACKAGE_SECTION net)
set(CPACK_DEBIAN_DERP-TOOLS_DESCRIPTION "DERP relay, probes and load test for Tailscale networks
Command-line tools on libderp: derp-serve (a DERP relay with derper's flags,
as a systemd service), derp-connect, derp-send, derp-recv, derp-ping,
derp-watch, derp-probe, derp-captive, derp-keygen and derp-bench. For
operators at a terminal and for CI jobs: --json output, one exit-code
table, timeouts and --assert gates.")
set(CPACK_DEBIAN_DERP-TOOLS_PACKAGE_CONTROL_EXTRA
  "${CMAKE_BINARY_DIR}/packaging/conffiles")
file(WRITE "${CMAKE_BINARY_DIR}/packaging/conffiles" "${CMAKE_INSTALL_FULL_SYSCONFDIR}/default/derp-serve\n")

# /usr/share/doc/<package>/{copyright,changelog.Debian.gz} in each package.
execute_process(COMMAND gzip -9n -c "${CMAKE_SOURCE_DIR}/packaging/debian/changelog"
  OUTPUT_FILE "${CMAKE_BINARY_DIR}/packaging/changelog.Debian.gz")
foreach(pair "lib;libderp0" "dev;libderp-dev" "tools;derp-tools")
  list(GET pair 0 component)
  list(GET pair 1 package)
  install(FILES packaging/debian/copyright "${CMAKE_BINARY_DIR}/packaging/changelog.Debian.gz"
    DESTINATION "${CMAKE_INSTALL_DATADIR}/doc/${package}" COMPONENT ${component})
endforeach()

include(CPack)
