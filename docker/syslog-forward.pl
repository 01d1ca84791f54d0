#!/usr/bin/perl
# Receive syslog(3) datagrams on a unix socket (/dev/log); write each line to stdout and send
# it to a remote syslog server (RFC 3164 over UDP, or octet-counted over TCP).
# Perl, because perl-base is already in every Debian and Ubuntu image: no extra package.
# Usage: syslog-forward.pl SOCKET HOST PORT udp|tcp HOSTNAME
use strict;
use warnings;
use IO::Socket::INET;
use IO::Socket::UNIX;
use Socket qw(SOCK_DGRAM);

my ($path, $host, $port, $proto, $myname) = @ARGV;
die "usage: $0 SOCKET HOST PORT udp|tcp HOSTNAME\n" unless defined $myname;
$| = 1;
unlink $path;
my $in = IO::Socket::UNIX->new(Type => SOCK_DGRAM, Local => $path)
  or die "syslog-forward: cannot listen on $path: $!\n";
chmod 0666, $path;

my $out;
sub remote {
    return $out if $out;
    $out = IO::Socket::INET->new(PeerAddr => $host, PeerPort => $port, Proto => $proto);
    warn "syslog-forward: cannot reach $host:$port/$proto: $!\n" unless $out;
    return $out;
}

while (1) {
    my $msg;
    defined($in->recv($msg, 65536)) or next;
    $msg =~ s/[\0\n]+\z//;
    # "<PRI>Mmm dd hh:mm:ss tag[pid]: text" -> add our host name after the time stamp.
    my ($pri, $stamp, $rest) = $msg =~ /\A<(\d{1,3})>(\w{3} [ \d]\d \d\d:\d\d:\d\d) (.*)\z/s;
    ($pri, $stamp, $rest) = (13, scalar(localtime) =~ s/^\w+ (.{15}).*/$1/r, $msg)
      unless defined $rest;
    print "$stamp $myname $rest\n";
    my $line = "<$pri>$stamp $myname $rest";
    my $sock = remote() or next;
    my $ok = $proto eq 'tcp' ? print {$sock} length($line) . " $line" : $sock->send($line);
    undef $out unless $ok;
}
