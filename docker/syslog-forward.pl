#!/usr/bin/perl
# Receive syslog(3) datagrams on a unix socket (/dev/log); write each line to stdout (as text,
# or as one JSON object per line) and, with a HOST, send it to a remote syslog server (RFC 3164
# over UDP, or octet-counted over TCP).
# Perl, because perl-base is already in every Debian and Ubuntu image: no extra package.
# Usage: syslog-forward.pl SOCKET HOST PORT udp|tcp HOSTNAME [text|json]   (HOST "": stdout only)
use strict;
use warnings;
use IO::Socket::INET;
use IO::Socket::UNIX;
use POSIX qw(strftime);
use Socket qw(SOCK_DGRAM);

my ($path, $host, $port, $proto, $myname, $format) = @ARGV;
die "usage: $0 SOCKET HOST PORT udp|tcp HOSTNAME [text|json]\n" unless defined $myname;
$format //= 'text';
die "syslog-forward: format $format is not text or json\n" unless $format =~ /\A(text|json)\z/;
$| = 1;
unlink $path;
my $in = IO::Socket::UNIX->new(Type => SOCK_DGRAM, Local => $path)
  or die "syslog-forward: cannot listen on $path: $!\n";
chmod 0666, $path;

my @SEVERITY = qw(emerg alert crit err warning notice info debug);

my $out;
sub remote {
    return $out if $out;
    $out = IO::Socket::INET->new(PeerAddr => $host, PeerPort => $port, Proto => $proto);
    warn "syslog-forward: cannot reach $host:$port/$proto: $!\n" unless $out;
    return $out;
}

sub json_string {
    my ($s) = @_;
    $s =~ s/(["\\])/\\$1/g;
    $s =~ s/([\x00-\x1f\x7f])/sprintf('\\u%04x', ord $1)/ge;
    return qq("$s");
}

# One JSON object: when it was received, the host, severity, program, pid, the Postfix queue
# ID when the message starts with one (short hex or long IDs), and the message.
sub json_line {
    my ($pri, $rest) = @_;
    my ($program, $pid, $text) = $rest =~ /\A([^\s\[:]+)(?:\[(\d+)\])?: (.*)\z/s;
    ($program, $text) = ('', $rest) unless defined $text;
    my ($queue_id) = $text =~ /\A([0-9A-F]{6,}|[0-9B-DF-HJ-NP-TV-Zb-df-hj-np-tv-z]{10,}z[0-9B-DF-HJ-NP-TV-Zb-df-hj-np-tv-z]+): /;
    my @fields = (
        time     => json_string(strftime('%Y-%m-%dT%H:%M:%S%z', localtime)),
        host     => json_string($myname),
        severity => json_string($SEVERITY[$pri & 7]),
        program  => json_string($program),
        (defined $pid ? (pid => $pid) : ()),
        (defined $queue_id ? (queue_id => json_string($queue_id)) : ()),
        message  => json_string($text),
    );
    my @pairs;
    push @pairs, json_string(shift @fields) . ':' . shift @fields while @fields;
    return '{' . join(',', @pairs) . '}';
}

while (1) {
    my $msg;
    defined($in->recv($msg, 65536)) or next;
    $msg =~ s/[\0\n]+\z//;
    # "<PRI>Mmm dd hh:mm:ss tag[pid]: text" -> add our host name after the time stamp.
    my ($pri, $stamp, $rest) = $msg =~ /\A<(\d{1,3})>(\w{3} [ \d]\d \d\d:\d\d:\d\d) (.*)\z/s;
    ($pri, $stamp, $rest) = (13, scalar(localtime) =~ s/^\w+ (.{15}).*/$1/r, $msg)
      unless defined $rest;
    print $format eq 'json' ? json_line($pri, $rest) . "\n" : "$stamp $myname $rest\n";
    next unless length $host;
    my $line = "<$pri>$stamp $myname $rest";
    my $sock = remote() or next;
    my $ok = $proto eq 'tcp' ? print {$sock} length($line) . " $line" : $sock->send($line);
    undef $out unless $ok;
}
