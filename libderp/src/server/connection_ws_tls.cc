// DERP over WebSocket over TLS.
#include "server/connection_ws.h"

namespace derp::server {

template void start_websocket_connection<TlsStream>(TlsStream, std::shared_ptr<void>,
                                                    const ConnectionShared&, Request, std::string,
                                                    const Presence&);

}  // namespace derp::server
