package io.occupancy.client;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;

/**
 * A TCP relay between a client and the real gate that records what the client sent, so tests can
 * see what reached the wire (metadata, user agent, keepalive pings) and can make the gate's
 * address start listening late (a gate coming back). Not a stand-in for the gate: every byte goes
 * to the real one. {@code upstream == null} makes a black hole that accepts and never answers.
 */
final class WireTap implements AutoCloseable {
  /** One HTTP/2 frame the client sent, with when its first byte arrived. */
  record Frame(long nanos, int type, int flags, int streamId, byte[] payload) {
    static final int PING = 0x6;

    boolean isPing() {
      return type == PING && (flags & 0x1) == 0;
    }
  }

  private static final int PREFACE_LENGTH = 24;

  private final String upstreamHost;
  private final int upstreamPort;
  private final List<Connection> connections = new CopyOnWriteArrayList<>();
  private final List<Socket> sockets = new CopyOnWriteArrayList<>();
  private volatile ServerSocket server;
  private volatile boolean rejecting;
  private final List<Long> rejectedAt = new CopyOnWriteArrayList<>();

  private WireTap(String upstream) {
    if (upstream == null) {
      upstreamHost = null;
      upstreamPort = 0;
    } else {
      int colon = upstream.lastIndexOf(':');
      upstreamHost = upstream.substring(0, colon);
      upstreamPort = Integer.parseInt(upstream.substring(colon + 1));
    }
  }

  /** A relay to {@code upstream} listening now on a free port. */
  static WireTap to(String upstream) throws IOException {
    WireTap tap = new WireTap(upstream);
    tap.listen(0);
    return tap;
  }

  /**
   * Listens now but closes every connection at once (recording when), like a gate that is down
   * behind a load balancer, until {@link #relay()}.
   */
  static WireTap rejecting(String upstream) throws IOException {
    WireTap tap = new WireTap(upstream);
    tap.rejecting = true;
    tap.listen(0);
    return tap;
  }

  /** Ends {@link #rejecting}: later connections are relayed to the gate. */
  void relay() {
    rejecting = false;
  }

  /** When each rejected connection attempt arrived ({@link System#nanoTime()}). */
  List<Long> rejectedAt() {
    return List.copyOf(rejectedAt);
  }

  /** Accepts connections and never answers: a gate that hangs. */
  static WireTap blackHole() throws IOException {
    return to(null);
  }

  void listen(int port) throws IOException {
    ServerSocket socket = new ServerSocket();
    socket.setReuseAddress(true);
    socket.bind(new InetSocketAddress(InetAddress.getLoopbackAddress(), port));
    server = socket;
    Thread acceptor = new Thread(this::acceptLoop, "wiretap-accept");
    acceptor.setDaemon(true);
    acceptor.start();
  }

  String address() {
    return "127.0.0.1:" + server.getLocalPort();
  }

  /** Everything clients sent so far, all connections concatenated, as Latin-1 text. */
  String clientText() {
    StringBuilder text = new StringBuilder();
    for (Connection connection : connections) {
      text.append(new String(connection.bytes(), StandardCharsets.ISO_8859_1));
    }
    return text.toString();
  }

  /** The HTTP/2 frames clients sent so far, connection by connection. */
  List<Frame> clientFrames() {
    List<Frame> frames = new ArrayList<>();
    for (Connection connection : connections) {
      frames.addAll(connection.frames());
    }
    return frames;
  }

  int connectionCount() {
    return connections.size();
  }

  @Override
  public void close() throws IOException {
    if (server != null) {
      server.close();
    }
    for (Socket socket : sockets) {
      socket.close();
    }
  }

  private void acceptLoop() {
    while (true) {
      Socket client;
      try {
        client = server.accept();
      } catch (IOException closed) {
        return;
      }
      if (rejecting) {
        rejectedAt.add(System.nanoTime());
        try {
          client.close();
        } catch (IOException ignored) {
          // closing is the point
        }
        continue;
      }
      sockets.add(client);
      Connection connection = new Connection();
      connections.add(connection);
      if (upstreamHost == null) {
        pump(client, OutputStream.nullOutputStream(), connection);
        continue;
      }
      try {
        Socket gate = new Socket(upstreamHost, upstreamPort);
        sockets.add(gate);
        pump(client, gate.getOutputStream(), connection);
        pump(gate, client.getOutputStream(), null);
      } catch (IOException e) {
        try {
          client.close();
        } catch (IOException ignored) {
          // already gone
        }
      }
    }
  }

  private void pump(Socket from, OutputStream to, Connection record) {
    Thread thread =
        new Thread(
            () -> {
              byte[] buffer = new byte[16384];
              try (InputStream in = from.getInputStream()) {
                int n;
                while ((n = in.read(buffer)) > 0) {
                  if (record != null) {
                    record.add(buffer, n);
                  }
                  to.write(buffer, 0, n);
                  to.flush();
                }
              } catch (IOException ended) {
                // one side closed
              } finally {
                try {
                  to.close();
                } catch (IOException ignored) {
                  // already closed
                }
              }
            },
            "wiretap-pump");
    thread.setDaemon(true);
    thread.start();
  }

  private static final class Connection {
    private final ByteArrayOutputStream bytes = new ByteArrayOutputStream();
    private final List<long[]> chunkStarts = new ArrayList<>(); // {offset, nanos}

    synchronized void add(byte[] buffer, int n) {
      chunkStarts.add(new long[] {bytes.size(), System.nanoTime()});
      bytes.write(buffer, 0, n);
    }

    synchronized byte[] bytes() {
      return bytes.toByteArray();
    }

    synchronized List<Frame> frames() {
      byte[] data = bytes.toByteArray();
      List<Frame> frames = new ArrayList<>();
      int at = PREFACE_LENGTH;
      while (at + 9 <= data.length) {
        int length = ((data[at] & 0xff) << 16) | ((data[at + 1] & 0xff) << 8) | (data[at + 2] & 0xff);
        if (at + 9 + length > data.length) {
          break;
        }
        int type = data[at + 3] & 0xff;
        int flags = data[at + 4] & 0xff;
        int stream =
            ((data[at + 5] & 0x7f) << 24)
                | ((data[at + 6] & 0xff) << 16)
                | ((data[at + 7] & 0xff) << 8)
                | (data[at + 8] & 0xff);
        byte[] payload = new byte[length];
        System.arraycopy(data, at + 9, payload, 0, length);
        frames.add(new Frame(arrival(at), type, flags, stream, payload));
        at += 9 + length;
      }
      return frames;
    }

    private long arrival(int offset) {
      long nanos = 0;
      for (long[] chunk : chunkStarts) {
        if (chunk[0] > offset) {
          break;
        }
        nanos = chunk[1];
      }
      return nanos;
    }
  }
}
