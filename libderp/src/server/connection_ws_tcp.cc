// DERP over WebSocket over plain TCP.
#include "server/connection_ws.h"

namespace derp::server {

template void start_websocket_connection<boost::asio::ip::tcp::socket>(
    boost::asio::ip::tcp::socket, std::shared_ptr<void>, const ConnectionShared&, Request,
    std::string, const Presence&);

}  // namespace derp::server
